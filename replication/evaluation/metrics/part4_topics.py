"""Metrics of Part 4's topic readings: the family-wise test that some feature's top 5 holds a topic's
prompts (labels shuffled within sample type)."""

from __future__ import annotations

from functools import partial

import numpy as np

from replication.evaluation import stats, topics
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.evaluation.metrics.registry import register
from replication.evaluation.writeup import writeup_strength
from replication.rundir import layout
from replication.rundir.reader import RunData, Untestable


def dimension_topic(run: RunData, dim: int) -> tuple[str | None, int]:
    """``topics.feature_topic`` of a dimension's top prompts."""
    top = run.top["dimensions"][dim]["top"]
    return topics.feature_topic([t["index"] for t in top], [t["value"] > 0 for t in top], prompt_topics(run))


def best_for_topic(topic: str, run: RunData) -> list[int]:
    """The live dimensions whose positive top 5 hold the most ``topic`` prompts (none if no hit)."""
    hits = topic_hits(run, topic)
    most = max(hits.values(), default=0)
    return [dim for dim, h in hits.items() if h == most > 0]


def topic_hits(run: RunData, topic: str) -> dict[int, int]:
    """Per live dimension, how many of its top-5 prompts with a code > 0 carry ``topic``."""
    if not run.live:
        return {}
    is_topic = np.array([t == topic for t in prompt_topics(run)])
    indices, positive = run.live_top
    hits = (is_topic[indices] & positive).sum(axis=1)
    return {d["dim"]: int(h) for d, h in zip(run.live, hits, strict=True)}


def max_hits(run: RunData, topic: str) -> topics.MaxHits | None:
    """``topics.max_hits_test`` on the live dimensions, once per topic and run."""

    def compute() -> topics.MaxHits | None:
        if not run.live:
            return None
        is_topic = np.array([t == topic for t in prompt_topics(run)])
        return topics.max_hits_test(*run.live_top, is_topic, sample_types(run))

    return run.memo(f"max_hits:{topic}", compute)


def _max_hits_pvalue(topic: str, run: RunData) -> float | Untestable | None:
    """The max-hits p-value; Untestable when not even a top 5 of only topic prompts would be flagged."""
    test = max_hits(run, topic)
    if test is None:
        return None
    if test.threshold is None:
        return Untestable(
            f"even a top {run.live_top[0].shape[1]} holding {test.reachable} '{topic}' prompts, the most there are, "
            f"gives p = {test.best_p:.2g}: the test cannot flag any feature"
        )
    return test.p


def _max_hits_detail(topic: str, run: RunData) -> str:
    test = max_hits(run, topic)
    return "no live dimension" if test is None else f"at most {test.observed} of a top {run.live_top[0].shape[1]}"


def _max_hits_blind(topic: str, run: RunData) -> bool:
    """Whether the write-up's own example (h topic prompts of 5) would not be flagged here."""
    test = max_hits(run, topic)
    return test is not None and test.tail.get(writeup_strength(topic), 1.0) >= topics.ALPHA


def _max_hits_flags(topic: str, run: RunData) -> str:
    test = max_hits(run, topic)
    if test is None:
        return "no live dimension to test"
    k, strength = run.live_top[0].shape[1], writeup_strength(topic)
    flags = (
        f"the test flags a feature only when at least {test.threshold} of its top {k} are '{topic}' prompts"
        if test.threshold is not None
        else f"no top {k} the corpus allows is flagged"
    )
    return (
        f"{flags} (labels shuffled within sample type); the write-up's own feature holds {strength} of 5, "
        f"which gets p = {stats.format_p(test.tail.get(strength, 1.0))} here"
    )


for _topic in topics.TESTED:
    register(
        f"topic_max_pvalue_{_topic}",
        layout.TOP_PROMPTS,
        "Family-wise test that SOME live dimension is a feature of the claim's topic: the most prompts of that "
        "topic (fixtures/topics.yaml) among any live dimension's top-5 positive prompts, against the same maximum "
        f"under {topics.PERMUTATIONS} shuffles of the topic labels within each sample type (prefill, decode step; "
        f"seed 0). Where even a feature of only that topic's prompts could not reach p < {topics.ALPHA}, it flags "
        "nothing.",
        partial(_max_hits_pvalue, _topic),
        partial(best_for_topic, _topic),
        detail=partial(_max_hits_detail, _topic),
        flags=partial(_max_hits_flags, _topic),
        blind=partial(_max_hits_blind, _topic),
        pvalue=True,
    )
