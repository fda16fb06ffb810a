"""The metrics the claims are measured by: the registry, filled by one module per part of the write-up.

``capture``: Parts 1-2; ``training``: Part 3 and the splice test; ``features``: Part 4; ``implied``: the
write-up's own numbers.
"""

from replication.metrics import capture, features, implied, training
from replication.metrics.registry import METRICS, Metric

__all__ = ["METRICS", "Metric", "capture", "features", "implied", "training"]
