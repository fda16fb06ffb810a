"""Topic purity: each feature's top prompts against the topic labels, and its exact p-value."""

from __future__ import annotations

import numpy as np
import pytest

from replication.evaluation.topics import feature_purity, purity_null


def test_feature_purity_and_p_values() -> None:
    labels = ["a"] * 5 + ["b"] * 5
    top = np.array([[0, 1, 2, 3, 4], [0, 5, 1, 6, 2], [5, 6, 7, 8, 0]])
    positive = np.ones_like(top, dtype=bool)
    positive[2, 4] = False  # a zero code does not count as a hit
    rows = feature_purity(top, positive, labels, [10, 11, 12], purity_null(labels, 5))
    assert [(r["dim"], r["topic"], r["hits"]) for r in rows] == [(10, "a", 5), (11, "a", 3), (12, "b", 4)]
    assert rows[0]["purity"] == 1.0
    assert rows[0]["p"] == pytest.approx(2 / 252)
    assert rows[1]["p"] == pytest.approx(1.0)
