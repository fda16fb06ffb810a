"""numpy 1.24's argsort order of ties: a sort, and the write-up's dimension 0."""

from __future__ import annotations

import numpy as np

from replication.sae import tieorder


def test_a_dead_feature_lists_the_writeups_dimension_0() -> None:
    """On 98 zeros numpy 1.24.4's argsort ends 28, 27, 26, 24, 97 (nox -s tieorder checks it there)."""
    assert tieorder.top_k(np.zeros(98, dtype=np.float32), 5).tolist() == [97, 24, 26, 27, 28]


def test_tie_order_argsort_sorts() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 17, 98, 500):
        column = np.where(rng.random(n) < 0.6, 0.0, rng.integers(0, 4, n)).astype(np.float32)
        order = tieorder.argsort(column)
        assert sorted(order.tolist()) == list(range(n))
        np.testing.assert_array_equal(column[order], np.sort(column))
