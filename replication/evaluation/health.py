"""Standard SAE health metrics the write-up never measured, as small pure functions.

Definitions (also printed in the report):
- L0: the number of non-zero code dimensions of one sample.
- FVU, fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over a set of
  rows; 0 is perfect, 1.0 is no better than predicting the set's own mean.
- Mean-predictor FVU: the FVU of predicting every row by the TRAINING rows' mean -- the baseline
  an SAE has to beat (at least 1.0 on the set itself).
- ReLU-decoder FVU floor: the FVU of max(x, 0), the best a reconstruction without negative values
  can do.
- Dead fraction: code dimensions that are zero on every sample of the dataset.
- Feature density: for each code dimension, the fraction of samples on which it is non-zero.
"""

from __future__ import annotations

import numpy as np


def l0(codes: np.ndarray) -> np.ndarray:
    """(n, d_hidden) codes -> (n,) count of non-zero dimensions per row."""
    return np.asarray((codes > 0).sum(axis=1))


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2: inf (or nan) where the rows do not vary, as
    one row does not."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(((x - x_hat) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum())


def relu_fvu_floor(x: np.ndarray) -> float:
    """The smallest FVU any non-negative reconstruction of ``x`` can have (a decoder ending in a ReLU):
    the best is max(x, 0), which leaves min(x, 0) unexplained."""
    return fvu(x, np.maximum(x, 0))


def mean_predictor_fvu(x: np.ndarray, train_mean: np.ndarray) -> float:
    """The FVU of predicting every row of ``x`` by the training mean."""
    return fvu(x, np.broadcast_to(train_mean, x.shape))


def feature_density(codes: np.ndarray) -> np.ndarray:
    """(n, d_hidden) -> (d_hidden,) fraction of rows on which each dimension is non-zero."""
    return np.asarray((codes > 0).mean(axis=0))


def dead_fraction(codes: np.ndarray) -> float:
    """Fraction of code dimensions that are zero on every row."""
    return float((feature_density(codes) == 0).mean())
