"""Part 4 analysis: top-k lists (the original's rule for ties), PCA."""

from __future__ import annotations

import numpy as np
import pytest

from replication.stages.analyze import pca_2d, top_activating


def test_top_activating_highest_first() -> None:
    codes = np.array([[0.1, 0.0], [0.5, 0.0], [0.3, 0.2], [0.0, 0.0]], dtype=np.float32)
    prompts = ["a", "b", "c", "d"]
    dims = top_activating(codes, prompts, k=3)
    assert [t["prompt"] for t in dims[0]["top"]] == ["b", "c", "a"]
    assert [t["value"] for t in dims[0]["top"]] == pytest.approx([0.5, 0.3, 0.1])
    assert dims[1]["top"][0] == {"index": 2, "prompt": "c", "value": pytest.approx(0.2)}
    # Ties (three zeros): numpy 1.24 insertion-sorts a column this short, i.e. stably -- ascending
    # order 0, 1, 3, 2 -- and the original's rule takes the last three, reversed.
    assert [t["index"] for t in dims[1]["top"]] == [2, 3, 1]
    current = top_activating(codes, prompts, k=3, tie_order="current")
    assert [t["index"] for t in current[1]["top"]] == np.argsort(codes[:, 1])[-3:][::-1].tolist()


def test_pca_2d() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(30, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    result = pca_2d(codes)
    assert np.asarray(result["coords"]).shape == (30, 2)
    # Reference: singular values of the centred data.
    singular = np.linalg.svd(codes - codes.mean(axis=0), compute_uv=False)
    expected = singular[:2] ** 2 / (singular**2).sum()
    assert result["explained_variance_ratio"] == pytest.approx(expected.tolist())
    assert np.abs(np.asarray(result["coords"])[:, 0]).std() > np.abs(np.asarray(result["coords"])[:, 1]).std()
    dead = pca_2d(np.zeros((4, 3)))
    assert dead["explained_variance_ratio"] is None
    for shape in [(2, 5), (6, 2)]:  # too small for ARPACK: the full SVD, the same reference
        small = rng.normal(size=shape)
        singular = np.linalg.svd(small - small.mean(axis=0), compute_uv=False)
        assert pca_2d(small)["explained_variance_ratio"] == pytest.approx(
            (singular[:2] ** 2 / (singular**2).sum()).tolist()
        )
