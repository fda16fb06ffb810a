"""Part 4's topics: each prompt's topic label, a feature's topic, and the family-wise max-hits test."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import yaml

from replication.config import FIXTURES_DIR
from replication.evaluation import stats

TOPICS_FILE = FIXTURES_DIR / "topics.yaml"
PERMUTATIONS = 2000
ALPHA = 0.05
"""The significance level of every test of Part 4."""
TESTED = ("javascript_web", "testing", "oop")
"""The topics of the write-up's three topic features, each tested for a feature of its own."""
OTHER = "other"
"""The label of a prompt that no topic rule matches; it never counts as a topic."""


def topic_labels(prompts: list[str]) -> list[str]:
    """Each prompt's topic: the first topic of ``fixtures/topics.yaml`` with a matching pattern."""
    rules = yaml.safe_load(TOPICS_FILE.read_text())["topics"]
    compiled = {topic: [re.compile(p, re.IGNORECASE) for p in pats] for topic, pats in rules.items()}
    return [
        next((t for t, pats in compiled.items() if any(p.search(prompt) for p in pats)), OTHER) for prompt in prompts
    ]


@dataclass(frozen=True)
class MaxHits:
    """The family-wise test that SOME feature's top k is rich in a topic."""

    observed: int
    """The largest number of topic prompts among any feature's positive top-k prompts."""
    p: float
    """Its permutation p-value: topic labels shuffled within each sample type, the same maximum over
    all features."""
    tail: dict[int, float]
    """The p-value of a feature holding h topic prompts, h = 1 .. min(k, topic size)."""

    @property
    def reachable(self) -> int:
        """The most topic prompts a top k can hold: min(k, topic size)."""
        return max(self.tail, default=0)

    @property
    def best_p(self) -> float:
        """The smallest p the design can reach: a feature with ``reachable`` topic prompts."""
        return self.tail.get(self.reachable, 1.0)

    @property
    def threshold(self) -> int | None:
        """The fewest topic prompts in a top k that the test flags (p < ALPHA); None when none is."""
        return next((h for h in sorted(self.tail) if self.tail[h] < ALPHA), None)


def max_hits_test(top_indices: np.ndarray, positive: np.ndarray, is_topic: np.ndarray, strata: list[str]) -> MaxHits:
    """Max over features of topic hits in the positive top k against its permutation null, and that
    null's p-value for every reachable number of hits. Labels shuffle within sample type: decode-step
    samples fill most top-k slots, and their topics are not the corpus's."""
    k = top_indices.shape[1]

    def most(labels: np.ndarray) -> np.ndarray:
        return np.asarray((labels[..., top_indices] & positive).sum(axis=-1).max(axis=-1, initial=0))

    null = stats.permutation_null(most, is_topic, PERMUTATIONS, 0, strata)
    observed = int((is_topic[top_indices] & positive).sum(axis=1).max(initial=0))
    reachable = min(k, int(is_topic.sum()))
    tail = {h: stats.tail_pvalue(null, h) for h in range(1, reachable + 1)}
    return MaxHits(observed, stats.tail_pvalue(null, observed), tail)


def feature_topic(indices: list[int], positive: list[bool], labels: list[str]) -> tuple[str | None, int]:
    """The topic holding most of a feature's positive top-k prompts ("other" never counts; a tie goes to
    the first by name), and how many it holds."""
    hits = Counter(labels[i] for i, p in zip(indices, positive, strict=True) if p and labels[i] != OTHER)
    return min(hits.items(), key=lambda item: (-item[1], item[0]), default=(None, 0))
