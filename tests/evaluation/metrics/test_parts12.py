"""Metrics of Parts 1-2 (``metrics/parts12.py``) on hand-built runs: the hooked layer, prompts, samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    JS,
    OOP,
    PLAIN,
    TESTING,
    compute,
    fake_run,
)

from replication.errors import ReplicationError
from replication.evaluation.metrics.part4 import WHITEBOX_PROMPT
from replication.evaluation.topics import OTHER, topic_labels
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData

# ---- Part 1: the hooked layer ------------------------------------------------------------------


def test_hook_layer_and_relative_depth_from_info_json(tmp_path: Path) -> None:
    artifacts.write_json(tmp_path / layout.CAPTURE_INFO, {"layer": 10, "n_layers": 32})
    run = RunData(tmp_path)
    assert compute("hook_layer", run) == 10
    assert compute("hook_relative_depth", run) == 0.3125  # 10 / 32
    # Layer 3 of 30: 0.1, not 10 (30 / 3).
    assert compute("hook_relative_depth", fake_run(tmp_path, info={"layer": 3, "n_layers": 30})) == pytest.approx(0.1)
    assert compute("hook_layer", fake_run(tmp_path, info={"layer": 0, "n_layers": 30})) == 0


# ---- Part 2: prompts, tokens, samples ------------------------------------------------------------


def test_the_prompts_have_the_topics_these_tests_assume() -> None:
    assert topic_labels([JS, TESTING, OOP, PLAIN, WHITEBOX_PROMPT]) == [
        "javascript_web",
        "testing",
        "oop",
        OTHER,
        "testing",
    ]


def records(new: list[int], total: list[int]) -> list[dict[str, Any]]:
    return [
        {"prompt": f"prompt {i}", "new_tokens": n, "total_tokens": t}
        for i, (n, t) in enumerate(zip(new, total, strict=True))
    ]


def test_n_prompts_and_token_means_from_samples_json(tmp_path: Path) -> None:
    # new tokens 10, 20, 36: mean 66 / 3 = 22; total 20, 30, 50: mean 100 / 3 = 33.33 (median 30).
    artifacts.write_json(tmp_path / layout.SAMPLES, records([10, 20, 36], [20, 30, 50]))
    run = RunData(tmp_path)
    assert compute("n_prompts", run) == 3
    assert compute("mean_new_tokens", run) == pytest.approx(22.0)
    assert compute("mean_total_tokens", run) == pytest.approx(100 / 3)


def test_samples_per_prompt(tmp_path: Path) -> None:
    # 6 stored samples for 3 prompts: 2.0 (not 3 / 6 = 0.5).
    run = fake_run(tmp_path, records=records([1, 1, 1], [5, 5, 5]), activations=[torch.zeros(1, 1, 4)] * 6)
    assert compute("samples_per_prompt", run) == 2.0
    run = fake_run(tmp_path, records=records([1, 1, 1, 1], [5, 5, 5, 5]), activations=[torch.zeros(1, 1, 4)] * 4)
    assert compute("samples_per_prompt", run) == 1.0


def test_decode_shaped_fraction_from_the_activations_file(tmp_path: Path) -> None:
    # Shapes (1,1,4), (1,3,4), (1,1,4), (1,1,4): 3 of 4 samples are one decode-step row.
    shapes = [(1, 1, 4), (1, 3, 4), (1, 1, 4), (1, 1, 4)]
    tensors = {layout.sample_key(i): torch.ones(*shape) for i, shape in enumerate(shapes)}
    artifacts.save_tensors(tmp_path / layout.ACTIVATIONS, tensors, {})
    run = RunData(tmp_path)
    assert compute("decode_shaped_fraction", run) == 0.75
    # A (1, 4, 1) sample is 4 rows of width 1, not a decode step.
    assert compute("decode_shaped_fraction", fake_run(tmp_path, activations=[torch.ones(1, 4, 1)])) == 0.0


def test_activation_width(tmp_path: Path) -> None:
    # Every sample's last axis is 4 (their sequence axes are 1 and 3).
    run = fake_run(tmp_path, activations=[torch.ones(1, 1, 4), torch.ones(1, 3, 4), torch.ones(1, 1, 4)])
    assert compute("activation_width", run) == 4
    with pytest.raises(ReplicationError, match=r"several widths: \[4, 5\]"):
        compute("activation_width", fake_run(tmp_path, activations=[torch.ones(1, 1, 4), torch.ones(1, 1, 5)]))


def test_nonzero_and_above_001_fractions(tmp_path: Path) -> None:
    samples = [
        torch.tensor([[[0.0, 0.005, -0.02, 3.0]]]),
        torch.tensor([[[0.0, 0.0, 0.001, -5.0], [0.5, 0.0, 0.01, 0.011]]]),
    ]
    # 12 values. Non-zero: 0.005, -0.02, 3, 0.001, -5, 0.5, 0.01, 0.011 -> 8 / 12.
    # |x| > 0.01: -0.02, 3, -5, 0.5, 0.011 -> 5 / 12 (0.01 itself is not above 0.01; the
    # negatives count by their magnitude).
    run = fake_run(tmp_path, activations=samples)
    assert compute("nonzero_fraction", run) == pytest.approx(8 / 12)
    assert compute("above_001_fraction", run) == pytest.approx(5 / 12)


def test_raw_spread_p99_over_median(tmp_path: Path) -> None:
    # One sample of 101 values +-0, 1, -2, 3, ..., 100: |x| is 0..100, whose 99th percentile is
    # the value at position 0.99 * 100 = 99, i.e. 99, and whose median is 50: 99 / 50 = 1.98.
    values = torch.tensor([(-1.0) ** i * i for i in range(101)]).reshape(1, 1, 101)
    assert compute("raw_spread_p99_over_median", fake_run(tmp_path, activations=[values])) == pytest.approx(1.98)
    # The same values split over two samples of two rows: every row counts, so still 1.98.
    halves = [values[..., :50].reshape(1, 2, 25), values[..., 50:100].reshape(1, 2, 25)]
    rest = values[..., 100:].reshape(1, 1, 1).expand(1, 1, 25).clone()  # 25 more values of |x| = 100
    # |x| now 0..99 and 25 x 100 (125 values): median = the 63rd smallest = 62; 99th percentile at
    # position 0.99 * 124 = 122.76, among the 100s: 100. 100 / 62.
    run = fake_run(tmp_path, activations=[*halves, rest])
    assert compute("raw_spread_p99_over_median", run) == pytest.approx(100 / 62)


def test_plotted_spread_uses_each_samples_last_row(tmp_path: Path) -> None:
    samples = [
        torch.tensor([[[1000.0] * 5, [0.0, -1.0, 2.0, -3.0, 4.0]]]),  # a prefill: only its last row is plotted
        torch.tensor([[[-5.0, 6.0, -7.0, 8.0, -9.0]]]),
    ]
    # Plotted |x|: 0..9. 99th percentile at position 0.99 * 9 = 8.91: 8.91; median 4.5; 8.91 / 4.5 = 1.98.
    run = fake_run(tmp_path, activations=samples)
    assert compute("plotted_spread_p99_over_median", run) == pytest.approx(8.91 / 4.5)
    # With the 1000s (all rows, 15 values) it would be 1000 / 7: the raw metric sees them.
    assert compute("raw_spread_p99_over_median", run) == pytest.approx(1000 / 7)


ORIGINAL_RECORDS = [{"prompt": "a", "shape": [1, 1, 2]}, {"prompt": "b", "shape": [1, 2, 2]}]
ORIGINAL_ITEMS = [
    {"prompt": "a", "generated_text": "a!", "activations": [[[0.1, 0.2]]]},
    {"prompt": "b", "generated_text": "b?", "activations": [[[0.1, 0.2], [0.3, 0.4]]]},
]


def original_format(tmp_path: Path, items: list[dict[str, Any]]) -> RunData:
    path = tmp_path / layout.ORIGINAL_FORMAT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return fake_run(tmp_path, records=ORIGINAL_RECORDS)


def test_original_format_ok(tmp_path: Path) -> None:
    assert compute("original_format_ok", original_format(tmp_path, ORIGINAL_ITEMS)) is True


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(ORIGINAL_ITEMS[:1], id="an item missing"),
        pytest.param(ORIGINAL_ITEMS[::-1], id="another order"),
        pytest.param([{**ORIGINAL_ITEMS[0], "prompt": "z"}, ORIGINAL_ITEMS[1]], id="another prompt"),
        pytest.param([ORIGINAL_ITEMS[0], {**ORIGINAL_ITEMS[1], "extra": 1}], id="an extra key"),
        pytest.param(
            [ORIGINAL_ITEMS[0], {k: v for k, v in ORIGINAL_ITEMS[1].items() if k != "generated_text"}],
            id="a key missing",
        ),
        pytest.param([ORIGINAL_ITEMS[0], {**ORIGINAL_ITEMS[1], "activations": [[[0.1, 0.2]]]}], id="another shape"),
    ],
)
def test_original_format_not_ok(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    assert compute("original_format_ok", original_format(tmp_path, items)) is False


def test_original_format_left_out_is_rebuilt_to_its_recorded_sha256(tiny_run: Path, tmp_path: Path) -> None:
    """Where activations_data.json is not committed, the capture's files rebuild it; a rebuild that
    is not the recorded file (here, another generated text) fails the check."""
    copy = shutil.copytree(tiny_run, tmp_path / "run")
    (copy / layout.ORIGINAL_FORMAT).unlink()
    assert compute("original_format_ok", RunData(copy)) is True
    records = json.loads((copy / layout.SAMPLES).read_text())
    records[0]["generated_text"] += "!"
    artifacts.write_json(copy / layout.SAMPLES, records)
    assert compute("original_format_ok", RunData(copy)) is False


def test_corpus_topic_fraction(tmp_path: Path) -> None:
    # javascript_web, testing, oop and one unlabelled prompt: 3 of 4 are programming topics.
    run = fake_run(tmp_path, records=[{"prompt": p} for p in (JS, TESTING, OOP, PLAIN)])
    assert compute("corpus_topic_fraction", run) == 0.75
    run = fake_run(tmp_path, records=[{"prompt": p} for p in (PLAIN, PLAIN, PLAIN, PLAIN, JS)])
    assert compute("corpus_topic_fraction", run) == pytest.approx(0.2)
