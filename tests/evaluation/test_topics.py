"""A feature's topic: the topic most of its positive top prompts carry."""

from __future__ import annotations

from replication.evaluation.topics import OTHER, feature_topic


def test_feature_topic_counts_positive_topic_prompts() -> None:
    labels = ["a"] * 5 + ["b"] * 5 + [OTHER] * 5
    assert feature_topic([0, 1, 2, 3, 4], [True] * 5, labels) == ("a", 5)
    assert feature_topic([0, 5, 1, 6, 2], [True] * 5, labels) == ("a", 3)
    # a zero code is no hit, and "other" never counts
    assert feature_topic([5, 6, 7, 8, 0], [True, True, True, True, False], labels) == ("b", 4)
    assert feature_topic([10, 11, 12, 0, 5], [True] * 5, labels) == ("a", 1)  # a tie: the first by name
    assert feature_topic([10, 11, 12, 13, 14], [True] * 5, labels) == (None, 0)
