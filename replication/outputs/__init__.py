"""Outputs of a finished run: the report, figures, SAELens export, feature cards."""
