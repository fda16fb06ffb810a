"""The stages of a run: capture, train, analyze, splice, control, token states, and the runner."""
