"""Metrics of Part 4 (``metrics/part4.py``) on hand-built runs: dead features, top prompts, the white-box
count, redundant pairs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import (
    DEAD,
    PRINTS_AS_00001,
    PRINTS_AS_ZERO,
    compute,
    dim,
    fake_run,
    whitebox_run,
)

from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.part4 import redundant_dim_pairs
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData

# ---- Part 4: top prompts -------------------------------------------------------------------------


def test_dead_features_and_median_top_activation(tmp_path: Path) -> None:
    dims = [
        dim(0, [0, 1, 2, 3, 4], [5.0, 4.0, 3.0, 2.0, 1.0]),  # live, top 5.0
        dim(1, [0, 1, 2, 3, 4], DEAD),
        dim(2, [0, 1, 2, 3, 4], [0.3, 0.2, 0.0, 0.0, 0.0]),  # live, top 0.3
        dim(3, [0, 1, 2, 3, 4], PRINTS_AS_ZERO),  # dead
        dim(4, [0, 1, 2, 3, 4], [2.0, 2.0, 2.0, 2.0, 2.0]),  # live, top 2.0
        dim(5, [0, 1, 2, 3, 4], DEAD),
    ]
    run = fake_run(tmp_path, top={"dimensions": dims})
    assert compute("dead_features", run) == 3  # dims 1, 3, 5
    assert compute("median_top_activation", run) == 2.0  # of 5.0, 0.3, 2.0
    # 5e-5 prints as 0.0001: live, so dim 6 is not dead; the median of 5.0, 0.3, 2.0, 5e-5 is 1.15.
    run = fake_run(tmp_path, top={"dimensions": [*dims, dim(6, [0, 1, 2, 3, 4], PRINTS_AS_00001)]})
    assert compute("dead_features", run) == 3
    assert compute("median_top_activation", run) == pytest.approx(1.15)
    all_dead = fake_run(tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]})
    assert compute("dead_features", all_dead) == 1
    assert compute("median_top_activation", all_dead) is None


def test_dead_features_from_top_prompts_json(tmp_path: Path) -> None:
    dims = [dim(0, [0, 1, 2, 3, 4]), dim(1, [4, 3, 2, 1, 0], DEAD), dim(2, [1, 2, 3, 4, 5], PRINTS_AS_ZERO)]
    artifacts.write_json(tmp_path / layout.TOP_PROMPTS, {"dimensions": dims})
    assert compute("dead_features", RunData(tmp_path)) == 2  # dims 1 and 2 of 3


def test_whitebox_top_dims(tmp_path: Path) -> None:
    assert compute("whitebox_top_dims", whitebox_run(tmp_path)) == 2


def test_whitebox_top_pvalue_by_hand(tmp_path: Path) -> None:
    # 2 of 4 live dimensions put the white-box prompt (a prefill sample) first. The live dimensions'
    # first prompts: 0, 0, 1 (prefill) and 9 (decode), so prefill prompts come first 3 times among 5
    # such prompts: rate 3 / 5 / 4 = 0.15 per dimension. P(X >= 2), X ~ Binomial(4, 0.15)
    # = 1 - 0.85^4 - 4 * 0.15 * 0.85^3 = 1 - 0.52200625 - 0.368475 = 0.10951875.
    assert compute("whitebox_top_pvalue", whitebox_run(tmp_path)) == pytest.approx(0.10951875)
    no_live = fake_run(tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{}] * 10)
    assert compute("whitebox_top_pvalue", no_live) is None


def test_redundant_pvalue_by_hand(tmp_path: Path) -> None:
    # 10 prompts; three live dimensions, 5 positive prompts each. Two random 5-sets of 10 share
    # >= 4 with probability [C(5,4) C(5,1) + C(5,5)] / C(10,5) = 26 / 252; 3 pairs: mean 78 / 252.
    # Observed: A-B share {0, 1, 2, 3} (4); A-C 0; B-C {9} (1): 1 pair.
    # P(Poisson(78 / 252) >= 1) = 1 - exp(-78 / 252) = 0.2662.
    dims = [dim(0, [0, 1, 2, 3, 4]), dim(1, [0, 1, 2, 3, 9]), dim(2, [5, 6, 7, 8, 9])]
    run = fake_run(tmp_path, top={"dimensions": dims}, records=[{}] * 10)
    assert compute("redundant_pvalue", run) == pytest.approx(1 - math.exp(-78 / 252))
    assert compute("redundant_pvalue", run) == pytest.approx(0.2662, abs=1e-4)
    # C's fifth prompt with a zero code: sizes 5, 5, 4. The 5-4 pairs share >= 4 with probability
    # C(5,4) C(5,0) / C(10,4) = 5 / 210, two such pairs: mean 26 / 252 + 10 / 210 = 0.15079.
    dims[2] = dim(2, [5, 6, 7, 8, 9], [4.0, 3.0, 2.0, 1.0, 0.0])
    run = fake_run(tmp_path, top={"dimensions": dims}, records=[{}] * 10)
    assert compute("redundant_pvalue", run) == pytest.approx(1 - math.exp(-(26 / 252 + 10 / 210)))
    # No redundant pair: P(X >= 0) = 1.
    dims = [dim(0, [0, 1, 2, 3, 4]), dim(1, [5, 6, 7, 8, 9])]
    assert compute("redundant_pvalue", fake_run(tmp_path, top={"dimensions": dims}, records=[{}] * 10)) == 1.0


def test_dead_dims_with_writeup_list(tmp_path: Path) -> None:
    listed = [97, 24, 26, 27, 28]  # the write-up's dimension 0, in its order
    dims = [
        dim(0, listed, DEAD),  # dead, the list: counted
        dim(1, listed, PRINTS_AS_ZERO),  # prints as 0.0000: dead, the list: counted
        dim(2, [24, 97, 26, 27, 28], DEAD),  # the same prompts in another order: not counted
        dim(3, [0, 1, 2, 3, 4], DEAD),  # not counted
        dim(4, listed),  # live: not among the dead at all
    ]
    assert compute("dead_dims_with_writeup_list", fake_run(tmp_path, top={"dimensions": dims})) == 0.5  # 2 of 4
    live_only = fake_run(tmp_path, top={"dimensions": [dim(0, listed), dim(1, listed, PRINTS_AS_00001)]})
    assert compute("dead_dims_with_writeup_list", live_only) is None


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
