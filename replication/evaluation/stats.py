"""Pure statistics: permutation p-values, hypergeometric, Poisson and binomial tails."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats

P_FLOOR = 1e-300
"""The smallest p-value given as a number: one below it is a bound, never an underflowed double."""


def format_p(p: float) -> str:
    """A p-value as text: "< 1e-300" at the floor, else three significant digits."""
    return f"< {P_FLOOR:g}" if p <= P_FLOOR else f"{p:.3g}"


PERMUTATION_CHUNK = 256
"""Shuffles a vectorised statistic sees at once: bounds the (chunk, ...) arrays it builds."""


def permutation_null(
    statistic: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    permutations: int,
    seed: int = 0,
    strata: Sequence[Any] | None = None,
) -> np.ndarray:
    """``statistic`` (vectorised: labels (..., n) -> values (...)) of ``permutations`` shuffles of the
    labels: its null distribution. With ``strata`` (one per label), labels move only within their stratum."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    groups = (
        [np.arange(n)] if strata is None else [np.flatnonzero(np.asarray(strata) == s) for s in dict.fromkeys(strata)]
    )
    order = np.tile(np.arange(n), (permutations, 1))
    for members in groups:
        # Row by row as rng.permutation would shuffle them, one stratum after the other.
        order[:, members] = members[rng.permuted(np.tile(np.arange(len(members)), (permutations, 1)), axis=1)]
    shuffled = np.asarray(labels)[order]
    chunks = [statistic(shuffled[i : i + PERMUTATION_CHUNK]) for i in range(0, permutations, PERMUTATION_CHUNK)]
    return np.concatenate(chunks).astype(float) if chunks else np.zeros(0)


def tail_pvalue(null: np.ndarray, observed: float) -> float:
    """One-sided permutation p-value of a value at least as large: (1 + #null >= observed) / (1 + #null)."""
    return float((1 + (null >= observed).sum()) / (1 + len(null)))


def pairs_sharing_tail(sizes: Sequence[int], population: int, shared: int) -> float:
    """Expected number of pairs, among random sets of these ``sizes`` from ``population`` items, that
    share at least ``shared`` items (hypergeometric, summed over pairs)."""
    counts = np.bincount(np.asarray(sizes, dtype=int))
    expected = 0.0
    for a, b in itertools.combinations_with_replacement(np.flatnonzero(counts), 2):
        pairs = counts[a] * (counts[a] - 1) / 2 if a == b else counts[a] * counts[b]
        expected += pairs * float(scipy.stats.hypergeom.sf(shared - 1, population, a, b))
    return expected


def poisson_tail(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected); a tail below ``P_FLOOR``, or past a double's range, is
    given as ``P_FLOOR``."""
    return max(float(scipy.stats.poisson.sf(observed - 1, expected)), P_FLOOR)


def binomial_tail(observed: int, trials: int, rate: float) -> float:
    """P(X >= observed) for X ~ Binomial(trials, rate)."""
    return float(scipy.stats.binom.sf(observed - 1, trials, rate))


STABLE_COSINE = 0.9
"""A feature reproduces in another SAE when its best decoder cosine there is at least this."""


def best_cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each column (feature direction) of ``reference`` (d, n), its best cosine with one of ``other`` (d, m)."""
    ref = reference / np.maximum(np.linalg.norm(reference, axis=0, keepdims=True), 1e-12)
    oth = other / np.maximum(np.linalg.norm(other, axis=0, keepdims=True), 1e-12)
    return np.asarray((ref.T @ oth).max(axis=1))
