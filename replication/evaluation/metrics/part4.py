"""Metrics of Part 4: dead and live features, top prompts, the white-box count and redundancy (the
topic tests are ``part4_topics``)."""

from __future__ import annotations

import itertools

import numpy as np

from replication.evaluation import stats, topics
from replication.evaluation.metrics.implied import with_writeup_list
from replication.evaluation.metrics.registry import counted, flat_dims, metric
from replication.rundir import layout
from replication.rundir.reader import PRINTS_AS_ZERO, RunData

WHITEBOX_PROMPT = "Can you explain the difference between white-box and black-box testing?"


def sample_types(run: RunData) -> list[str]:
    """Each sample's type, prefill or decode step: the strata of every permutation null of Part 4
    (decode-step samples fill most top-5 slots, and their topics are not the corpus's)."""
    return [r["source"] for r in run.records]


@counted(layout.TOP_PROMPTS, "dead_features")
def dead_dims(run: RunData) -> list[int]:
    """Code dimensions whose top-5 values all print as 0.0000 (< 5e-5) on the 98 samples."""
    return [d["dim"] for d in run.top["dimensions"] if d["top"][0]["value"] < PRINTS_AS_ZERO]


@metric(layout.TOP_PROMPTS)
def median_top_activation(run: RunData) -> float | None:
    """Median over live dimensions of the top prompt's code value."""
    return float(np.median([d["top"][0]["value"] for d in run.live])) if run.live else None


def _whitebox_blind(run: RunData) -> bool:
    """Whether the write-up's own count, 2 dimensions, would not beat the chance rate here (p >= alpha)."""
    rate = _whitebox_rate(run)
    return rate is not None and stats.binomial_tail(2, len(run.live), rate) >= topics.ALPHA


def _whitebox_flags(run: RunData) -> str:
    rate = _whitebox_rate(run)
    if rate is None:
        return "no live dimension, or no white-box prompt"
    flagged = next(
        (k for k in range(1, len(run.live) + 1) if stats.binomial_tail(k, len(run.live), rate) < topics.ALPHA), None
    )
    return (
        f"by the chance rate of its sample type, {flagged} or more dimensions would be flagged; the write-up's "
        f"own 2 get p = {stats.format_p(stats.binomial_tail(2, len(run.live), rate))} here"
    )


@counted(layout.TOP_PROMPTS, "whitebox_top_dims", blind=_whitebox_blind, flags=_whitebox_flags)
def whitebox_dims(run: RunData) -> list[int]:
    """Live dimensions whose top prompt is the white-box/black-box testing question."""
    return [d["dim"] for d in run.live if d["top"][0]["prompt"] == WHITEBOX_PROMPT]


def _positive_sets(run: RunData) -> list[frozenset[int]]:
    """Each live dimension's top prompts with a code > 0: a zero slot is filled by tie order, not by
    the feature."""
    return [frozenset(t["index"] for t in d["top"] if t["value"] > 0) for d in run.live]


@counted(layout.TOP_PROMPTS, "redundant_pairs")
def redundant_dim_pairs(run: RunData) -> list[tuple[int, int]]:
    """Pairs of live dimensions sharing at least 4 of their top-5 prompts with a code > 0."""

    def compute() -> list[tuple[int, int]]:
        groups: dict[frozenset[int], list[int]] = {}
        for d, s in zip(run.live, _positive_sets(run), strict=True):
            groups.setdefault(s, []).append(d["dim"])
        distinct = [s for s in groups if len(s) >= 4]
        pairs = [pair for s in distinct for pair in itertools.combinations(groups[s], 2)]
        member = np.zeros((len(distinct), 1 + max((max(s) for s in distinct), default=0)), dtype=np.float32)
        for row, prompts in enumerate(distinct):
            member[row, list(prompts)] = 1
        for i, j in zip(*np.nonzero(np.triu(member @ member.T >= 4, k=1)), strict=True):
            pairs += [(min(x, y), max(x, y)) for x in groups[distinct[i]] for y in groups[distinct[j]]]
        return sorted(pairs)

    return run.memo("redundant_pairs", compute)


@metric(layout.TOP_PROMPTS)
def redundant_pairs_expected(run: RunData) -> float:
    """The number of such pairs that random prompt sets of the same sizes give (hypergeometric)."""
    return stats.pairs_sharing_tail([len(s) for s in _positive_sets(run)], len(run.records), 4)


@metric(layout.TOP_PROMPTS)
def redundant_pair_rate(run: RunData) -> float | None:
    """Redundant pairs over all pairs of live dimensions."""
    n = len(run.live)
    return len(redundant_dim_pairs(run)) / (n * (n - 1) / 2) if n >= 2 else None


def _redundant_detail(run: RunData) -> str:
    n, rate = len(run.live), redundant_pair_rate(run)
    shown = "—" if rate is None else f"{rate:.2g}"
    pairs, expected = len(redundant_dim_pairs(run)), redundant_pairs_expected(run)
    return f"{pairs} of {n * (n - 1) // 2:,} live pairs (rate {shown}); random sets give {expected:.3g}"


@metric(
    layout.TOP_PROMPTS,
    dims=lambda run: flat_dims(redundant_dim_pairs(run)),
    detail=_redundant_detail,
    flags=lambda run: "the untrained SAE decides: random prompt sets ignore that a few prompts fill most top-5 lists",
    pvalue=True,
)
def redundant_pvalue(run: RunData) -> float:
    """P(at least redundant_pairs such pairs | random prompt sets), Poisson with mean
    redundant_pairs_expected, computed in log space (a tail below 1e-300 is given as 1e-300)."""
    return stats.poisson_tail(len(redundant_dim_pairs(run)), redundant_pairs_expected(run))


@metric(layout.TOP_PROMPTS, dims=whitebox_dims, pvalue=True, blind=_whitebox_blind, flags=_whitebox_flags)
def whitebox_top_pvalue(run: RunData) -> float | None:
    """P(at least whitebox_top_dims live dimensions put the white-box question first | the live
    dimensions' first prompts spread evenly over the prompts of its sample type): binomial. Prefill
    and decode-step samples come first at very different rates, so the rate is that of the white-box
    sample's own type: (live dimensions whose first prompt is of that type) / (prompts of that type)
    / (live dimensions)."""
    rate = _whitebox_rate(run)
    return None if rate is None else stats.binomial_tail(len(whitebox_dims(run)), len(run.live), rate)


def _whitebox_rate(run: RunData) -> float | None:
    """The chance that a live dimension puts the white-box prompt first: the rate at which prompts of
    its sample type come first. None if none is live or the prompt is not in the corpus."""
    if not run.live or WHITEBOX_PROMPT not in run.prompts:
        return None
    source = sample_types(run)
    kind = source[run.prompts.index(WHITEBOX_PROMPT)]
    firsts = sum(source[d["top"][0]["index"]] == kind for d in run.live)
    return float(firsts / source.count(kind) / len(run.live))


@metric(layout.TOP_PROMPTS, dims=dead_dims)
def dead_dims_with_writeup_list(run: RunData) -> float | None:
    """Fraction of dead dimensions whose top 5 are the write-up's dimension-0 prompts in its order."""
    dead, listing = dead_dims(run), set(with_writeup_list(run))
    return sum(d in listing for d in dead) / len(dead) if dead else None
