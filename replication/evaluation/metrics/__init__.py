"""The metrics the claims are measured by: the registry, filled by one module per part of the write-up.

``parts12``: Parts 1-2; ``part3``: Part 3 and the splice test; ``part4`` and ``part4_topics``: Part 4;
``initial``: how far training moved the SAE from its initialisation; ``implied``: the write-up's own numbers.
"""

from replication.evaluation.metrics import implied, initial, part3, part4, part4_topics, parts12
from replication.evaluation.metrics.registry import METRICS, Metric

__all__ = ["METRICS", "Metric", "implied", "initial", "part3", "part4", "part4_topics", "parts12"]
