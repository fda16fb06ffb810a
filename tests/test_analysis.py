"""Part 4 analysis: the row each sample is encoded by, top-k lists, PCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replication.analysis import pca_2d, sample_rows, top_activating


def test_sample_rows_take_the_last_row_of_prefill_samples() -> None:
    decode = torch.full((1, 1, 2), 1.0)
    prefill = torch.arange(6.0).reshape(1, 3, 2)
    x, rows = sample_rows([decode, prefill])
    assert rows == [0, 2]
    torch.testing.assert_close(x, torch.tensor([[1.0, 1.0], [4.0, 5.0]]))


def test_top_activating_highest_first() -> None:
    codes = np.array([[0.1, 0.0], [0.5, 0.0], [0.3, 0.2], [0.0, 0.0]], dtype=np.float32)
    prompts = ["a", "b", "c", "d"]
    dims = top_activating(codes, prompts, k=3)
    assert [t["prompt"] for t in dims[0]["top"]] == ["b", "c", "a"]
    assert [t["value"] for t in dims[0]["top"]] == pytest.approx([0.5, 0.3, 0.1])
    assert dims[1]["top"][0] == {"index": 2, "prompt": "c", "value": pytest.approx(0.2)}
    # The original's rule exactly: the last k of numpy's argsort, reversed.
    assert [t["index"] for t in dims[1]["top"]] == np.argsort(codes[:, 1])[-3:][::-1].tolist()


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
