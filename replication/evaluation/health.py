"""Standard SAE health metrics the write-up never measured (L0, FVU, dead fraction, density), as pure functions."""

from __future__ import annotations

import numpy as np


def l0(codes: np.ndarray) -> np.ndarray:
    """(n, d_hidden) codes -> (n,) count of non-zero dimensions per row."""
    return np.asarray((codes > 0).sum(axis=1))


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (0 is perfect,
    1 no better than the rows' mean); inf (or nan) where the rows do not vary, as one row does not."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(((x - x_hat) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum())


def relu_fvu_floor(x: np.ndarray) -> float:
    """The smallest FVU of a non-negative reconstruction of ``x`` (a decoder ending in a ReLU): max(x, 0)'s."""
    return fvu(x, np.maximum(x, 0))


def mean_predictor_fvu(x: np.ndarray, train_mean: np.ndarray) -> float:
    """The FVU of predicting every row of ``x`` by the training mean: the baseline an SAE has to beat."""
    return fvu(x, np.broadcast_to(train_mean, x.shape))


def feature_density(codes: np.ndarray) -> np.ndarray:
    """(n, d_hidden) -> (d_hidden,) fraction of rows on which each dimension is non-zero."""
    return np.asarray((codes > 0).mean(axis=0))


def dead_fraction(codes: np.ndarray) -> float:
    """Fraction of code dimensions that are zero on every row."""
    return float((feature_density(codes) == 0).mean())
