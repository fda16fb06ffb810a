"""Part 4 analysis: the row each sample is encoded by, top-k lists, PCA."""

from __future__ import annotations

import numpy as np
import pytest

from replication.evaluation import stats
from replication.evaluation.stats import max_share_tail
from replication.evaluation.topics import feature_purity, purity_null
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


def test_max_share_tail_by_hand() -> None:
    # 2 of 4 prompts (a, a, b, b): both share a topic with probability 2 / C(4, 2) = 1/3.
    np.testing.assert_allclose(max_share_tail({"a": 2, "b": 2}, 2, ["a", "b"]), [1.0, 1.0, 1 / 3])
    # 5 of 10 (five a, five b): all five one topic in 2 of C(10, 5) = 252 draws; >= 4: 2 * 5 * 5 more.
    tail = max_share_tail({"a": 5, "b": 5}, 5, ["a", "b"])
    assert tail[5] == pytest.approx(2 / 252)
    assert tail[4] == pytest.approx((2 + 2 * 5 * 5) / 252)
    assert tail[3] == pytest.approx(1.0)  # 5 into two topics always puts 3 in one
    # A label that is not a topic never counts.
    assert max_share_tail({"a": 5, "other": 5}, 5, ["a"])[5] == pytest.approx(1 / 252)


def test_feature_purity_p_and_q_values() -> None:
    labels = ["a"] * 5 + ["b"] * 5
    top = np.array([[0, 1, 2, 3, 4], [0, 5, 1, 6, 2], [5, 6, 7, 8, 0]])
    positive = np.ones_like(top, dtype=bool)
    positive[2, 4] = False  # a zero code does not count as a hit
    rows = feature_purity(top, positive, labels, [10, 11, 12], purity_null(labels, 5))
    assert [(r["dim"], r["topic"], r["hits"]) for r in rows] == [(10, "a", 5), (11, "a", 3), (12, "b", 4)]
    assert rows[0]["purity"] == 1.0
    assert rows[0]["p"] == pytest.approx(2 / 252)
    assert rows[1]["p"] == pytest.approx(1.0)
    ps = [r["p"] for r in rows]
    # Benjamini-Hochberg by hand: q_(i) = min over j >= i of p_(j) * m / j.
    assert rows[0]["q"] == pytest.approx(min(ps[0] * 3, ps[2] * 3 / 2, 1.0))
    assert rows[2]["q"] == pytest.approx(min(ps[2] * 3 / 2, 1.0))


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
    observed, p = stats.permutation_pvalue(most, labels, permutations, seed=11)
    assert observed == float(labels[rows].sum(axis=1).max())
    assert p == (1 + sum(v >= observed for v in expected)) / (1 + permutations)
