"""Metrics on hand-built runs: a RunData whose cached files are set by hand, the expected values
worked out in the comments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import fake_run

from replication.config import load_profile
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.part4 import redundant_dim_pairs
from replication.evaluation.topics import OTHER, PERMUTATIONS, topic_feature_test, topic_labels


def dim(index: int, top: list[int], values: list[float] | None = None) -> dict[str, Any]:
    """One code dimension of analyze/top_prompts.json: its top-5 prompt indices, highest first."""
    values = values if values is not None else [5.0, 4.0, 3.0, 2.0, 1.0]
    return {
        "dim": index,
        "top": [{"index": i, "value": v, "prompt": f"p{i}"} for i, v in zip(top, values, strict=True)],
    }


DEAD = [0.0, 0.0, 0.0, 0.0, 0.0]
PRINTS_AS_ZERO = [4e-5, 3e-5, 0.0, 0.0, 0.0]  # below 5e-5: 0.0000 at four decimals, not live


# ---- redundant_pairs -----------------------------------------------------------------------


def test_redundant_pairs_by_hand(tmp_path: Path) -> None:
    dims = [
        dim(0, [0, 1, 2, 3, 4]),  # A
        dim(1, [4, 3, 2, 1, 0]),  # B: A's set in another order -> A-B
        dim(2, [0, 1, 2, 3, 9]),  # C: 4 of A's (and B's) -> A-C, B-C
        dim(3, [0, 1, 2, 8, 9]),  # D: 3 of A's; 4 of C's {0, 1, 2, 9} -> C-D
        dim(4, [5, 6, 7, 8, 9]),  # E: at most 2 shared with anyone
        dim(5, [0, 1, 2, 3, 4], DEAD),  # A's set, but dead: not counted
        dim(6, [0, 1, 2, 3, 4], PRINTS_AS_ZERO),  # prints as 0.0000: not live, not counted
    ]
    run = fake_run(tmp_path, top={"dimensions": dims})
    assert [d["dim"] for d in run.live] == [0, 1, 2, 3, 4]
    assert METRICS["redundant_pairs"].compute(run) == 4  # A-B, A-C, B-C, C-D
    assert redundant_dim_pairs(run) == [(0, 1), (0, 2), (1, 2), (2, 3)]  # the pairs the cards show


def test_redundant_pairs_identical_sets_count_every_pair(tmp_path: Path) -> None:
    dims = [dim(k, [0, 1, 2, 3, 4]) for k in range(3)]  # 3 identical sets: 3 pairs
    dims.append(dim(3, [10, 1, 2, 3, 4]))  # shares 4 with each of the three: 3 more pairs
    dims.append(dim(4, [10, 11, 2, 3, 4]))  # 4 shared with dim 3 only: 1 more
    run = fake_run(tmp_path, top={"dimensions": dims})
    assert METRICS["redundant_pairs"].compute(run) == 7
    assert redundant_dim_pairs(run) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (3, 4)]
    assert METRICS["redundant_pairs"].compute(fake_run(tmp_path, top={"dimensions": dims[3:]})) == 1


# ---- topic features and their permutation p-value --------------------------------------------


def one_type(labels: np.ndarray) -> list[str]:
    """Every sample of one type: the stratified shuffle is a plain one."""
    return ["decode"] * len(labels)


def test_topic_feature_count_by_hand() -> None:
    is_topic = np.array([True, True, True, True] + [False] * 6)  # prompts 0-3 carry the topic
    top = np.array(
        [
            [0, 1, 2, 5, 6],  # 3 topic prompts: a topic feature
            [0, 1, 5, 6, 7],  # 2: not
            [0, 1, 2, 3, 4],  # 4: a topic feature
            [3, 2, 1, 8, 9],  # 3 in its top 5, but see ``positive``
        ]
    )
    positive = np.ones_like(top, dtype=bool)
    assert topic_feature_test(top, positive, is_topic, one_type(is_topic))[0] == 3
    positive[3, 2] = False  # prompt 1 is in row 3's top 5 with a zero code: 2 positive hits left
    assert topic_feature_test(top, positive, is_topic, one_type(is_topic))[0] == 2


def test_topic_pvalue_is_1_when_no_feature_is_a_topic_feature() -> None:
    # Observed count 0: every shuffle gives a count >= 0, so p = (1 + 2000) / (1 + 2000) = 1.
    is_topic = np.array([True, True] + [False] * 18)
    top = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    count, p = topic_feature_test(top, np.ones_like(top, dtype=bool), is_topic, one_type(is_topic))
    assert (count, p) == (0, 1.0)


def test_topic_pvalue_is_small_for_planted_topic_features() -> None:
    # 100 prompts, 10 of the topic; two features whose top 5 are 5 topic prompts each: count 2.
    # Under shuffled labels one feature gets >= 3 of 10 topic prompts among its 5 with probability
    # [C(10,3) C(90,2) + C(10,4) C(90,1) + C(10,5)] / C(100,5) = 499752 / 75287520 = 0.0066, and
    # both far less often: about 4e-5, 0.1 of 2000 shuffles, so p is about 1 / 2001.
    is_topic = np.zeros(100, dtype=bool)
    is_topic[:10] = True
    top = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    count, p = topic_feature_test(top, np.ones_like(top, dtype=bool), is_topic, one_type(is_topic))
    assert count == 2
    assert 1 / (1 + PERMUTATIONS) <= p < 0.005
    # The same features with the labels spread over 10 other prompts: no topic feature, p = 1.
    assert topic_feature_test(top, np.ones_like(top, dtype=bool), np.roll(is_topic, 50), one_type(is_topic)) == (0, 1.0)


JS = "How do JavaScript closures differ from Python's?"
PLAIN = "Tell me about the weather on a quiet day."


def test_topic_metrics_on_a_run(tmp_path: Path) -> None:
    prompts = [JS] * 5 + [PLAIN] * 15  # prompts 0-4: javascript_web; the rest: no topic
    assert topic_labels(prompts) == ["javascript_web"] * 5 + [OTHER] * 15
    dims = [
        dim(0, [0, 1, 2, 10, 11]),  # 3 javascript prompts: a javascript_web feature
        dim(1, [0, 1, 10, 11, 12]),  # 2: not
        dim(2, [0, 1, 2, 3, 4], DEAD),  # all 5, but dead: not among the live dimensions
        dim(3, [3, 4, 0, 12, 13], [1.0, 0.5, 0.0, 0.0, 0.0]),  # 3 javascript prompts, one with a zero code: not
    ]
    run = fake_run(tmp_path, top={"dimensions": dims}, records=[{"prompt": p} for p in prompts])
    assert METRICS["topic_features_javascript_web"].compute(run) == 1
    # One feature's 5 of 20 prompts hold >= 3 of the 5 javascript ones with probability
    # [C(5,3) C(15,2) + C(5,4) C(15,1) + 1] / C(20,5) = 1126 / 15504 = 0.073; with dims 0, 1
    # and 3 each a chance, P(count >= 1) is between 0.073 and 3 * 0.073 = 0.22.
    p = METRICS["topic_pvalue_javascript_web"].compute(run)
    assert 0.06 < p < 0.22
    # No prompt is about testing: no testing feature, and p = 1.
    assert METRICS["topic_features_testing"].compute(run) == 0
    assert METRICS["topic_pvalue_testing"].compute(run) == 1.0


def test_topic_metrics_are_none_without_a_live_dimension(tmp_path: Path) -> None:
    run = fake_run(tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{"prompt": JS}] * 5)
    assert METRICS["topic_features_javascript_web"].compute(run) is None
    assert METRICS["topic_pvalue_javascript_web"].compute(run) is None


# ---- first_full_sparsity_epoch ----------------------------------------------------------------


def history(sparsities: list[float]) -> list[dict[str, float]]:
    return [{"epoch": k + 1, "sparsity": s} for k, s in enumerate(sparsities)]


@pytest.mark.parametrize(
    ("sparsities", "expected"),
    [
        ([0.5, 0.99994, 0.99995, 1.0], 3),  # 0.99994 prints as 0.9999; 0.99995 as 1.0000
        ([1.0, 0.9, 1.0], 1),  # the first, not the last
        ([0.2, 0.9, 0.9999], "never"),
        ([0.99994], "never"),
    ],
)
def test_first_full_sparsity_epoch(tmp_path: Path, sparsities: list[float], expected: int | str) -> None:
    run = fake_run(tmp_path, history=history(sparsities))
    assert METRICS["first_full_sparsity_epoch"].compute(run) == expected


# ---- padding_row_fraction -----------------------------------------------------------------------


def samples(lengths: list[int], d: int = 4) -> list[torch.Tensor]:
    return [torch.ones(1, t, d) for t in lengths]


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        # Padded to the longest sample, T = 3; int(0.8 * 4) = 3 samples train: 9 rows, 1 + 3 + 1 = 5 real.
        ([1, 3, 1, 2], 4 / 9),
        ([1, 1, 1], 0.0),  # every sample (1, 1, d): nothing to pad
        ([4, 4], 0.0),
        ([10, 1, 1, 1, 1], 27 / 40),  # 4 of 5 samples train, 4 * 10 = 40 rows, 13 real
        ([1, 1, 1, 1, 10], 36 / 40),  # only the validation sample is long, yet the training ones pad to it
    ],
)
def test_padding_row_fraction(tmp_path: Path, lengths: list[int], expected: float) -> None:
    """Of the SAE's training rows: the samples before the positional split, padded to the longest."""
    run = fake_run(tmp_path, activations=samples(lengths), config=load_profile("tiny"), records=[{}] * len(lengths))
    assert METRICS["padding_row_fraction"].compute(run) == pytest.approx(expected, abs=1e-12)


def test_padding_row_fraction_is_0_for_a_per_token_dataset(tmp_path: Path) -> None:
    config = load_profile("tiny", {"capture.positions": "all"})
    run = fake_run(tmp_path, activations=samples([1, 3, 1, 2]), config=config)
    assert METRICS["padding_row_fraction"].compute(run) == 0.0
