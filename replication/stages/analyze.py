"""Part 4: encode every sample with the best SAE, list top-activating prompts, PCA of codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA

from replication.config import TieOrder
from replication.sae import tieorder
from replication.sae.autoencoder import SparseAutoencoder


def encode(sae: SparseAutoencoder, x: torch.Tensor) -> np.ndarray:
    """Codes (N, d_hidden) as float32 numpy."""
    with torch.no_grad():
        return sae.encode(x).numpy()


def top_activating(
    codes: np.ndarray, prompts: Sequence[str], k: int, tie_order: TieOrder = "numpy_1_24"
) -> list[dict[str, Any]]:
    """Per code dimension the k prompts with the largest code, highest first: the original's
    ``np.argsort(column)[-k:][::-1]``, equal values in numpy 1.24's order (or this numpy's)."""
    result = []
    for dim in range(codes.shape[1]):
        column = codes[:, dim]
        top = tieorder.top_k(column, k) if tie_order == "numpy_1_24" else np.argsort(column)[-k:][::-1]
        result.append(
            {
                "dim": dim,
                "top": [{"index": int(i), "prompt": prompts[i], "value": float(column[i])} for i in top],
            }
        )
    return result


def pca_2d(codes: np.ndarray) -> dict[str, Any]:
    """2-D PCA of codes (rows, d_hidden); all-constant codes have no direction, so no ratio."""
    if codes.shape[0] < 2 or float(codes.var(axis=0).sum()) == 0.0:
        return {"coords": np.zeros((codes.shape[0], 2)).tolist(), "explained_variance_ratio": None}
    # 2 of ~1000 directions: ARPACK (iterative, equal to the full SVD to 1e-14), which needs more
    # than 2 rows and columns; the full SVD below that.
    solver = "arpack" if min(codes.shape) > 2 else "full"
    pca = PCA(n_components=2, svd_solver=solver, random_state=0)
    coords = pca.fit_transform(codes.astype(np.float64))
    return {"coords": coords.tolist(), "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}
