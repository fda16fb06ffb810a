"""SAE health metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from replication.evaluation.health import dead_fraction, feature_density, fvu, l0, mean_predictor_fvu


def test_l0_counts_non_zero_dimensions() -> None:
    assert l0(np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]])).tolist() == [2, 0]


def test_fvu_by_hand() -> None:
    x = np.array([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0): total variance 1 + 1 = 2
    assert fvu(x, x) == 0.0
    assert fvu(x, np.array([[1.0, 1.0], [2.0, 0.0]])) == pytest.approx(2.0 / 2.0)
    assert fvu(x, np.array([[2.0, 0.0], [2.0, 0.0]])) == pytest.approx(1.0)  # the mean itself


def test_mean_predictor_fvu_by_hand() -> None:
    x = np.array([[1.0, 0.0], [3.0, 0.0]])
    assert mean_predictor_fvu(x, x.mean(axis=0)) == pytest.approx(1.0)
    assert mean_predictor_fvu(x, np.zeros(2)) == pytest.approx((1.0 + 9.0) / 2.0)


def test_density_and_dead_fraction() -> None:
    codes = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert feature_density(codes).tolist() == [0.25, 0.5, 0.0]
    assert dead_fraction(codes) == pytest.approx(1 / 3)
