"""Pure statistics: the permutation null and its p-value, the tails, the best cosines."""

from __future__ import annotations

import numpy as np

from replication.evaluation import stats
from replication.evaluation.stats import best_cosines


def test_permutation_null_is_the_statistic_of_each_shuffle_in_turn() -> None:
    """The vectorised null: chunk by chunk, the same values as the statistic of each
    ``rng.permutation`` drawn one after the other, in that order."""
    rng = np.random.default_rng(3)
    labels = rng.random(40) < 0.3
    rows = rng.integers(0, 40, size=(25, 5))

    def most(shuffled: np.ndarray) -> np.ndarray:
        return shuffled[..., rows].sum(axis=-1).max(axis=-1)

    permutations = stats.PERMUTATION_CHUNK * 2 + 7  # a last chunk of 7
    draws = np.random.default_rng(11)
    expected = [float(labels[draws.permutation(40)][rows].sum(axis=1).max()) for _ in range(permutations)]
    null = stats.permutation_null(most, labels, permutations, seed=11)
    assert null.shape == (permutations,) and null.tolist() == expected
    assert stats.permutation_null(most, labels, 0).shape == (0,)
    observed = float(labels[rows].sum(axis=1).max())
    assert stats.tail_pvalue(null, observed) == (1 + sum(v >= observed for v in expected)) / (1 + permutations)


def test_best_cosines_find_permuted_and_scaled_directions() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(16, 5))
    other = np.concatenate([reference[:, ::-1] * 3.0, rng.normal(size=(16, 4))], axis=1)
    np.testing.assert_allclose(best_cosines(reference, other), np.ones(5), rtol=1e-12)
    assert (best_cosines(reference, rng.normal(size=(16, 5))) < 0.99).all()
