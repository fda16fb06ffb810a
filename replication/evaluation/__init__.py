"""Evaluation of a finished run: statistics, topics, SAE health, claims, metrics, verdicts, compare."""
