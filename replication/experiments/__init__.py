"""Experiments beside a run: the SAE retrained with other seeds, and the ablations."""
