"""Pure statistics: the multivariate hypergeometric tail, permutation p-values, Benjamini-Hochberg."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.stats


def max_share_tail(counts: dict[str, int], k: int, scored: Sequence[str]) -> np.ndarray:
    """tail[h] = P(some label of ``scored`` holds >= h of k items drawn at random without
    replacement from a population with these per-label ``counts``), h = 0..k: the exact
    permutation null of a feature's purity, by enumerating the multivariate hypergeometric."""
    labels = list(counts)
    sizes = [counts[label] for label in labels]
    scored_at = [i for i, label in enumerate(labels) if label in scored]
    prob_max = np.zeros(k + 1)

    def compositions(i: int, left: int) -> Iterator[list[int]]:
        if i == len(sizes) - 1:
            if left <= sizes[i]:
                yield [left]
            return
        for take in range(min(left, sizes[i]) + 1):
            for rest in compositions(i + 1, left - take):
                yield [take, *rest]

    for draw in compositions(0, k):
        prob = scipy.stats.multivariate_hypergeom.pmf(x=draw, m=sizes, n=k)
        prob_max[max((draw[i] for i in scored_at), default=0)] += prob
    return np.minimum(np.cumsum(prob_max[::-1])[::-1], 1.0)


def permutation_pvalue(
    statistic: Callable[[np.ndarray], float], labels: np.ndarray, permutations: int, seed: int = 0
) -> tuple[float, float]:
    """(observed, p): ``statistic(labels)`` and the one-sided p-value of a value at least as large
    under ``permutations`` shuffles of the labels, (1 + #null >= observed) / (1 + permutations)."""
    observed = statistic(labels)
    rng = np.random.default_rng(seed)
    null = np.array([statistic(rng.permutation(labels)) for _ in range(permutations)])
    return observed, float((1 + (null >= observed).sum()) / (1 + permutations))


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values (scipy's implementation), in the order given."""
    if not pvalues:
        return []
    return [float(q) for q in scipy.stats.false_discovery_control(list(pvalues))]
