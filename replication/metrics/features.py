"""Metrics of Part 4: dead and live features, top prompts, redundancy, and topic features."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from replication import layout, topics
from replication.metrics.capture import prompt_topics
from replication.metrics.registry import metric, register
from replication.rundata import RunData

WHITEBOX_PROMPT = "Can you explain the difference between white-box and black-box testing?"


def purity(run: RunData) -> list[dict[str, Any]]:
    """``topics.feature_purity`` of every live dimension's top prompts, once per run."""

    def compute() -> list[dict[str, Any]]:
        if not run.live:
            return []
        return topics.feature_purity(*run.live_top, prompt_topics(run), [d["dim"] for d in run.live])

    return run.memo("purity", compute)


def topic_test(run: RunData, topic: str) -> tuple[int, float] | None:
    """``topics.topic_feature_test`` on the live dimensions, once per topic and run (its count and
    its p-value are two metrics of one permutation test); None when no dimension is live."""

    def compute() -> tuple[int, float] | None:
        if not run.live:
            return None
        is_topic = np.array([t == topic for t in prompt_topics(run)])
        return topics.topic_feature_test(*run.live_top, is_topic)

    return run.memo(f"topic_test:{topic}", compute)


@metric(layout.TOP_PROMPTS)
def dead_features(run: RunData) -> int:
    """Code dimensions whose top-5 values all print as 0.0000 (< 5e-5) on the 98 samples."""
    return len(run.top["dimensions"]) - len(run.live)


@metric(layout.TOP_PROMPTS)
def median_top_activation(run: RunData) -> float | None:
    """Median over live dimensions of the top prompt's code value (None if none is live)."""
    return float(np.median([d["top"][0]["value"] for d in run.live])) if run.live else None


@metric(layout.TOP_PROMPTS)
def whitebox_top_dims(run: RunData) -> int:
    """Live dimensions whose top prompt is the white-box/black-box testing question."""
    return sum(d["top"][0]["prompt"] == WHITEBOX_PROMPT for d in run.live)


@metric(layout.TOP_PROMPTS)
def redundant_pairs(run: RunData) -> int:
    """Pairs of live dimensions sharing at least 4 of their 5 top prompts."""
    sets = [frozenset(t["index"] for t in d["top"]) for d in run.live]
    counts: dict[frozenset[int], int] = {}
    for s in sets:
        counts[s] = counts.get(s, 0) + 1
    exact = sum(c * (c - 1) // 2 for c in counts.values())
    distinct = list(counts)
    near = sum(counts[a] * counts[b] for i, a in enumerate(distinct) for b in distinct[i + 1 :] if len(a & b) >= 4)
    return exact + near


@metric(layout.TOP_PROMPTS)
def significant_topic_features(run: RunData) -> int:
    """Live dimensions whose top-5 prompts are purer in one topic than shuffled labels give: exact
    permutation p-value of their purity, Benjamini-Hochberg q < 0.05 over all live dimensions."""
    return sum(row.get("q", 1.0) < 0.05 for row in purity(run))


def _topic_result(topic: str, item: int, run: RunData) -> float | None:
    """The count (item 0) or the p-value (item 1) of ``topic_test``; None when no dimension is live."""
    result = topic_test(run, topic)
    return None if result is None else result[item]


for _topic in ("javascript_web", "testing", "oop"):
    register(
        f"topic_features_{_topic}",
        layout.TOP_PROMPTS,
        f"Live dimensions with >= {topics.TOPIC_MIN_HITS} '{_topic}' prompts (fixtures/topics.yaml) among their "
        "top-5 positive prompts.",
        partial(_topic_result, _topic, 0),
    )
    register(
        f"topic_pvalue_{_topic}",
        layout.TOP_PROMPTS,
        f"Permutation p-value of topic_features_{_topic}: {topics.PERMUTATIONS} shuffles of the prompts' topic "
        "labels (seed 0); small = more such features than chance gives.",
        partial(_topic_result, _topic, 1),
    )
