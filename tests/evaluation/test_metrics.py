"""Every metric a claim uses, on a hand-built run: the files (or the cached properties that read them)
are set by hand and the expected values are worked out in the comments, never by the metric's own
formula."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import torch
from helpers import (
    DEAD,
    JS,
    OOP,
    PLAIN,
    PRINTS_AS_00001,
    PRINTS_AS_ZERO,
    REPO_ROOT,
    TESTING,
    TOPIC_PROMPTS,
    dim,
    fake_run,
    topic_run,
    whitebox_run,
)

from replication.config import load_profile
from replication.errors import ReplicationError
from replication.evaluation.metrics import METRICS, part4_topics
from replication.evaluation.metrics.implied import SELECTED, TIE_ORDER, writeup_dimension0
from replication.evaluation.metrics.part4 import WHITEBOX_PROMPT, redundant_dim_pairs
from replication.evaluation.topics import OTHER, PERMUTATIONS, topic_labels
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, Untestable
from replication.sae import tieorder
from replication.sae.autoencoder import SparseAutoencoder


def compute(name: str, run: RunData) -> Any:
    return METRICS[name].compute(run)


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


def test_corpus_topic_fraction(tmp_path: Path) -> None:
    # javascript_web, testing, oop and one unlabelled prompt: 3 of 4 are programming topics.
    run = fake_run(tmp_path, records=[{"prompt": p} for p in (JS, TESTING, OOP, PLAIN)])
    assert compute("corpus_topic_fraction", run) == 0.75
    run = fake_run(tmp_path, records=[{"prompt": p} for p in (PLAIN, PLAIN, PLAIN, PLAIN, JS)])
    assert compute("corpus_topic_fraction", run) == pytest.approx(0.2)


# ---- Part 3: the SAE and its settings ----------------------------------------------------------


def test_sae_widths_from_the_saved_sae(tmp_path: Path) -> None:
    SparseAutoencoder(3, 7).save(tmp_path / layout.TRAIN_DIR)  # encoder 3 -> 7
    run = RunData(tmp_path)
    assert compute("sae_d_in", run) == 3
    assert compute("sae_d_hidden", run) == 7


def test_tied_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sae = SparseAutoencoder(3, 5)
    assert compute("tied_weights", fake_run(tmp_path, sae=sae)) is False  # independent random inits
    with torch.no_grad():
        sae.decoder.weight.copy_(sae.encoder.weight.T)
    sae.save(tmp_path / layout.TRAIN_DIR)
    assert compute("tied_weights", RunData(tmp_path)) is True
    with torch.no_grad():
        sae.decoder.weight[0, 0] += 1e-3  # one entry off
    assert compute("tied_weights", fake_run(tmp_path, sae=sae)) is False


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([[0.0, 1.0], [2.0, 0.5]], "relu"),  # all >= 0, one exactly 0
        ([[0.1, 1.0], [2.0, 0.5]], "other"),  # no code is cut to 0
        ([[0.0, -1.0], [2.0, 0.5]], "other"),  # a negative code: no ReLU
        ([[0.0, 0.0], [0.0, 0.0]], "relu"),  # all cut
    ],
)
def test_encoder_activation(tmp_path: Path, codes: list[list[float]], expected: str) -> None:
    assert compute("encoder_activation", fake_run(tmp_path, codes=np.array(codes, dtype=np.float32))) == expected


def test_training_settings_from_config_yaml(tmp_path: Path) -> None:
    overrides = {
        "train.decoder_activation": "linear",
        "train.l1_coefficient": 0.005,
        "train.lr": 0.02,
        "train.patience": 7,
        "train.max_epochs": 33,
    }
    artifacts.write_config(tmp_path, load_profile("tiny", overrides).to_dict())
    run = RunData(tmp_path)
    assert compute("decoder_activation", run) == "linear"
    assert compute("l1_coefficient", run) == 0.005
    assert compute("learning_rate", run) == 0.02
    assert compute("patience", run) == 7
    assert compute("max_epochs", run) == 33


def test_training_settings_of_the_original(tmp_path: Path) -> None:
    # The write-up: ReLU decoder, L1 0.001, lr 0.001, patience 5, 50 epochs max; the seed profile is faithful.
    run = fake_run(tmp_path, config=load_profile("seed"))
    assert [compute(name, run) for name in ("decoder_activation", "l1_coefficient", "learning_rate")] == [
        "relu",
        0.001,
        0.001,
    ]
    assert (compute("patience", run), compute("max_epochs", run)) == (5, 50)


# ---- Part 3: the training history ----------------------------------------------------------------


def epochs(train: list[float], val: list[float], sparsity: list[float] | None = None) -> list[dict[str, float]]:
    sparsity = sparsity if sparsity is not None else [0.5] * len(train)
    return [
        {"epoch": k + 1, "train_loss": t, "val_loss": v, "sparsity": s, "train_mse": 0.0, "l1_loss": 0.0}
        for k, (t, v, s) in enumerate(zip(train, val, sparsity, strict=True))
    ]


def test_history_metrics_from_history_json(tmp_path: Path) -> None:
    # The write-up's shape: train loss 17 -> 2 -> 0.0133, val 0.02 -> 0.015 -> 0.0142, sparsity from 0.5578.
    artifacts.write_json(
        tmp_path / layout.HISTORY, epochs([17.0, 2.0, 0.0133], [0.02, 0.015, 0.0142], [0.5578, 0.9, 1.0])
    )
    run = RunData(tmp_path)
    assert compute("stop_epoch", run) == 3
    assert compute("sparsity_epoch1", run) == 0.5578
    assert compute("first_train_loss", run) == 17.0
    assert compute("final_train_loss", run) == 0.0133
    assert compute("final_val_loss", run) == 0.0142
    assert compute("train_loss_drop", run) == pytest.approx(1278.195, rel=1e-6)  # 17 / 0.0133


def test_stop_epoch_is_the_number_of_epochs_trained(tmp_path: Path) -> None:
    assert compute("stop_epoch", fake_run(tmp_path, history=epochs([3.0] * 6, [1.0] * 6))) == 6
    assert compute("stop_epoch", fake_run(tmp_path, history=epochs([3.0], [1.0]))) == 1


def test_history_tracks_metrics(tmp_path: Path) -> None:
    full = epochs([2.0, 1.0], [1.0, 1.0])
    assert compute("history_tracks_metrics", fake_run(tmp_path, history=full)) is True
    for key in ("train_mse", "l1_loss", "sparsity", "val_loss"):
        partial = [full[0], {k: v for k, v in full[1].items() if k != key}]  # the second epoch lacks one
        assert compute("history_tracks_metrics", fake_run(tmp_path, history=partial)) is False, key


def test_loss_is_mse_plus_l1(tmp_path: Path) -> None:
    config = load_profile("tiny", {"train.l1_coefficient": 0.001})
    # 0.5 + 0.001 * 16500 = 17.0; 0.01 + 0.001 * 3.3 = 0.0133.
    rows = [
        {"train_loss": 17.0, "train_mse": 0.5, "l1_loss": 16500.0},
        {"train_loss": 0.0133, "train_mse": 0.01, "l1_loss": 3.3},
    ]
    assert compute("loss_is_mse_plus_l1", fake_run(tmp_path, history=rows, config=config)) is True
    # The L1 term without its coefficient: 0.5 + 16500 != 17.
    unweighted = [{**rows[0], "train_loss": 16500.5}, rows[1]]
    assert compute("loss_is_mse_plus_l1", fake_run(tmp_path, history=unweighted, config=config)) is False
    # Off by 1e-4 of the loss, ten times the tolerance of 1e-5.
    off = [rows[0], {**rows[1], "train_loss": 0.0133 * (1 + 1e-4)}]
    assert compute("loss_is_mse_plus_l1", fake_run(tmp_path, history=off, config=config)) is False
    # Another coefficient in the config: 0.5 + 0.01 * 16500 = 165.5, not 17.
    other = load_profile("tiny", {"train.l1_coefficient": 0.01})
    assert compute("loss_is_mse_plus_l1", fake_run(tmp_path, history=rows, config=other)) is False


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        # 4 epochs: half = (4 - 1) // 2 = 1 -> (10 - 6) / (10 - 2) = 0.5.
        ([10.0, 6.0, 4.0, 2.0], 0.5),
        # 5 epochs: half = 2 -> (17 - 1) / (17 - 0.0133) = 16 / 16.9867.
        ([17.0, 5.0, 1.0, 0.5, 0.0133], 16 / 16.9867),
        # 3 epochs: half = 1 -> (4 - 3) / (4 - 0) = 0.25.
        ([4.0, 3.0, 0.0], 0.25),
        ([4.0, 3.0], None),  # fewer than 3 epochs
        ([4.0, 3.0, 5.0, 4.0], None),  # first == last: no drop
    ],
)
def test_early_drop_share(tmp_path: Path, losses: list[float], expected: float | None) -> None:
    value = compute("early_drop_share", fake_run(tmp_path, history=epochs(losses, [1.0] * len(losses))))
    assert value == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("val", "patience", "expected"),
    [
        # Last 3: 0.016, 0.02, 0.018 -> (0.02 - 0.016) / 0.016 = 0.25 (the 0.5 of epoch 1 is older).
        ([0.5, 0.02, 0.016, 0.02, 0.018], 3, 0.25),
        # Patience 5 takes all five: (0.5 - 0.016) / 0.016 = 30.25.
        ([0.5, 0.02, 0.016, 0.02, 0.018], 5, 30.25),
        # Patience beyond the history: both epochs, (4 - 2) / 2 = 1.
        ([2.0, 4.0], 5, 1.0),
        ([2.0], 5, None),  # one epoch: no spread
        ([2.0, 4.0, 8.0], 1, None),  # patience 1: one epoch
    ],
)
def test_val_loss_late_range(tmp_path: Path, val: list[float], patience: int, expected: float | None) -> None:
    run = fake_run(
        tmp_path, history=epochs([1.0] * len(val), val), config=load_profile("tiny", {"train.patience": patience})
    )
    value = compute("val_loss_late_range", run)
    assert value == (pytest.approx(expected) if expected is not None else None)


# ---- Part 3: the SAE on the data ----------------------------------------------------------------


def identity_sae() -> SparseAutoencoder:
    """d_in = d_hidden = 2, W_e = W_d = I, biases 0, ReLU decoder: x_hat = ReLU(ReLU(x)) = ReLU(x)."""
    sae = SparseAutoencoder(2, 2, "relu")
    with torch.no_grad():
        for layer in (sae.encoder, sae.decoder):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    return sae.eval()


def test_val_fvu_by_hand(tmp_path: Path) -> None:
    samples = [
        torch.tensor([[[1.0, 2.0]]]),
        torch.tensor([[[3.0, 4.0]]]),
        torch.tensor([[[5.0, 6.0]]]),
        torch.tensor([[[1.0, -1.0]]]),
        torch.tensor([[[3.0, 1.0], [-1.0, 3.0]]]),
    ]
    # train_fraction 0.6: int(0.6 * 5) = 3 samples train; the validation rows are
    # x = (1, -1), (3, 1), (-1, 3), and x_hat = ReLU(x) = (1, 0), (3, 1), (0, 3).
    # sum ||x - x_hat||^2 = 1 + 0 + 1 = 2. mean(x) = (1, 1); sum ||x - mean||^2 = 4 + 4 + 8 = 16.
    # FVU = 2 / 16 = 0.125. (The training rows are all positive: their FVU would be 0.)
    config = load_profile("tiny", {"train.train_fraction": 0.6})
    identity_sae().save(tmp_path / layout.TRAIN_DIR)
    run = fake_run(tmp_path, activations=samples, config=config)
    assert compute("val_fvu", run) == pytest.approx(0.125)


def test_sample_code_statistics(tmp_path: Path) -> None:
    codes = np.array([[0, 1, 2], [0, 0, 0], [3, 0, 0.5], [4, 5, 6]], dtype=np.float32)
    # Non-zero per sample: 2, 0, 2, 3 -> mean L0 7 / 4 = 1.75.
    # Zeros: 1 + 3 + 1 + 0 = 5 of 12.
    # Non-zero values 1, 2, 3, 0.5, 4, 5, 6 -> sorted 0.5, 1, 2, 3, 4, 5, 6: median 3 (with the
    # zeros the median of all 12 would be 0.75).
    run = fake_run(tmp_path, codes=codes)
    assert compute("sample_code_l0", run) == 1.75
    assert compute("sample_code_zero_fraction", run) == pytest.approx(5 / 12)
    assert compute("median_nonzero_code", run) == 3.0
    dead = fake_run(tmp_path, codes=np.zeros((3, 4), dtype=np.float32))
    assert (compute("sample_code_l0", dead), compute("sample_code_zero_fraction", dead)) == (0.0, 1.0)
    assert compute("median_nonzero_code", dead) is None


def test_codes_from_the_codes_file(tmp_path: Path) -> None:
    codes = torch.tensor([[0.0, 2.0], [0.0, 0.0]])  # L0 1 and 0: 0.5; 3 zeros of 4
    artifacts.save_tensors(tmp_path / layout.CODES, {"codes": codes}, {})
    run = RunData(tmp_path)
    assert compute("sample_code_l0", run) == 0.5
    assert compute("sample_code_zero_fraction", run) == 0.75
    assert compute("median_nonzero_code", run) == 2.0
    assert compute("encoder_activation", run) == "relu"


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


# ---- Part 4: topic features --------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_by_hand(tmp_path: Path, topic: str) -> None:
    # Observed: the most topic prompts in any live top 5 is 3. The null's one row is the live one
    # (prompts 10, 11, 12, 5, 6): it holds >= 3 of the 5 topic prompts with probability
    # [C(5,3) C(15,2) + C(5,4) C(15,1) + C(5,5)] / C(20,5) = 1126 / 15504 = 0.0726, estimated from
    # 2000 shuffles (standard error 0.006). It holds >= 4 with probability (75 + 1) / 15504 = 0.0049:
    # the test flags a feature of 4 topic prompts or more, and the write-up's JavaScript and OOP
    # examples (4 of 5) would get p = 0.005, its testing example (1 of 5)
    # p = P(>= 1) = 1 - C(15,5) / C(20,5) = 1 - 3003 / 15504 = 0.806.
    run = topic_run(tmp_path, topic)
    assert compute(f"topic_max_pvalue_{topic}", run) == pytest.approx(1126 / 15504, abs=0.025)
    flags = METRICS[f"topic_max_pvalue_{topic}"].flags
    assert flags is not None
    text = flags(run)
    assert text.startswith(f"the test flags a feature only when at least 4 of its top 5 are '{topic}' prompts")
    shown = float(text.rsplit("p = ", 1)[1].split()[0])
    expected = 1 - 3003 / 15504 if topic == "testing" else 76 / 15504
    assert shown == pytest.approx(expected, abs=0.03 if topic == "testing" else 0.004)


def test_the_topic_null_shuffles_within_sample_types(tmp_path: Path) -> None:
    # 20 prompts: 10 prefill (0-9), 10 decode steps (10-19); the 3 topic prompts are prefill (0, 1, 2)
    # and the live top 5 is all decode steps. Shuffled within types, a topic label never reaches a
    # decode step: every shuffle gives 0, so the observed 0 has p = 1, and a single topic prompt in
    # that top 5 would already be flagged (p = 1 / 2001).
    prompts = [JS] * 3 + [PLAIN] * 17
    records = [{"prompt": p, "source": "prefill" if i < 10 else "decode"} for i, p in enumerate(prompts)]
    run = fake_run(tmp_path / "typed", top={"dimensions": [dim(0, [10, 11, 12, 13, 14])]}, records=records)
    test = part4_topics.max_hits(run, "javascript_web")
    assert test is not None
    assert (test.observed, test.p, test.threshold) == (0, 1.0, 1)
    assert test.tail == {h: 1 / (1 + PERMUTATIONS) for h in (1, 2, 3)}
    # One type for all: P(>= 2 of the 3 in a top 5 of 20) = (3 C(17,3) + C(17,2)) / C(20,5) = 2176 / 15504
    # = 0.14, P(all 3) = C(17,2) / C(20,5) = 136 / 15504 = 0.0088: only 3 of 3 is flagged.
    plain = fake_run(
        tmp_path / "plain", top={"dimensions": [dim(0, [10, 11, 12, 13, 14])]}, records=[{"prompt": p} for p in prompts]
    )
    test = part4_topics.max_hits(plain, "javascript_web")
    assert test is not None and test.threshold == 3
    assert test.tail[2] == pytest.approx(2176 / 15504, abs=0.03)


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_planted_feature(tmp_path: Path, topic: str) -> None:
    # 100 prompts, 10 of the topic (0-9); a live dimension whose top 5 are all topic prompts. One of
    # the null's 2 rows holds all 5 with probability C(10,5) / C(100,5) = 252 / 75287520 = 3.3e-6:
    # none of 2000 shuffles reaches 5, so p = 1 / 2001.
    prompts = [TOPIC_PROMPTS[topic]] * 10 + [PLAIN] * 90
    dims = [dim(0, [0, 1, 2, 3, 4]), dim(1, [50, 51, 52, 53, 54])]
    run = fake_run(tmp_path, top={"dimensions": dims}, records=[{"prompt": p} for p in prompts])
    assert compute(f"topic_max_pvalue_{topic}", run) == pytest.approx(1 / (1 + PERMUTATIONS))


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_untestable_and_none(tmp_path: Path, topic: str) -> None:
    # One topic prompt of 20: a top 5 holds at most 1, and the one live top 5 holds it with
    # probability 5 / 20 = 0.25 under shuffled labels: no count the corpus allows is flagged.
    value = compute(f"topic_max_pvalue_{topic}", topic_run(tmp_path, topic, n_topic=1))
    assert isinstance(value, Untestable)
    assert value.reason.startswith(f"even a top 5 holding 1 '{topic}' prompts, the most there are, gives p = ")
    assert 0.2 < float(value.reason.split("gives p = ")[1].split(":")[0]) < 0.3
    no_live = fake_run(
        tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{"prompt": TOPIC_PROMPTS[topic]}] * 5
    )
    assert compute(f"topic_max_pvalue_{topic}", no_live) is None


# ---- the write-up's own numbers --------------------------------------------------------------------

WRITEUP = (REPO_ROOT / "fixtures" / "writeup.md").read_text(encoding="utf-8")


def quoted(*quotes: str) -> None:
    """The write-up says each of these: the numbers worked with below are its own."""
    for quote in quotes:
        assert quote in WRITEUP, quote


def test_implied_best_epoch() -> None:
    quoted("stopping early at epoch 6", "early stopping (patience=5)")
    # Stopped at epoch 6 with patience 5: epochs 2-6 failed to improve, so the best was epoch 1.
    assert compute("implied_best_epoch", RunData(Path("unused"))) == 1


def test_implied_code_mass_ratio() -> None:
    quoted("Final train loss = 0.0133", "fell fast from 17", "**L1 Penalty**: 0.001")
    # sum|z| <= 0.0133 / 0.001 = 13.3 at the end, <= 17 / 0.001 = 17000 at epoch 1: 13.3 / 17000 = 7.8235e-4.
    assert compute("implied_code_mass_ratio", RunData(Path("unused"))) == pytest.approx(13.3 / 17000, rel=1e-9)


def test_implied_init_l1_ratio() -> None:
    quoted("rising from 0.5578 (epoch 1)", "(<0.01)", "fell fast from 17", "**Encoder Dimension**: 8192")
    # Phi^-1(0.5578) = 0.1454 (normal table: Phi(0.145) = 0.5576, Phi(0.146) = 0.5580); s = 0.01 / 0.1454
    # = 0.06878; E[ReLU(u)] = s / sqrt(2 pi) = 0.02744 per code; 78 (int(0.8 * 98)) x 8192 = 638976 codes
    # x 0.001 x 0.02744 = 17.53, / 17 = 1.031.
    value = compute("implied_init_l1_ratio", RunData(Path("unused")))
    assert value == pytest.approx(1.031, abs=1e-3)
    s = 0.01 / NormalDist().inv_cdf(0.5578)  # the same with the standard library's normal, not scipy's
    assert value == pytest.approx(0.001 * 78 * 8192 * s / math.sqrt(2 * math.pi) / 17, rel=1e-6)


def test_writeup_dimension0_is_the_listed_prompts() -> None:
    corpus = (REPO_ROOT / "fixtures" / "prompts.txt").read_text(encoding="utf-8").splitlines()
    # The write-up's five (Activation: 0.0000) prompts of dimension 0, found by reading prompts.txt.
    assert writeup_dimension0() == [97, 24, 26, 27, 28]
    assert corpus[97].startswith("What's the difference between synchronous and asynchronous")
    assert corpus[28].startswith("Can you explain polymorphism")


def test_writeup_dim0_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunData(Path("unused"))
    assert compute("writeup_dim0_origin", run) == TIE_ORDER
    # Another tie order (this numpy's stable one: the last five, 97 down to 93) gives another list.
    monkeypatch.setattr(tieorder, "top_k", lambda column, k: np.argsort(column, kind="stable")[-k:][::-1])
    assert compute("writeup_dim0_origin", run) == SELECTED
    monkeypatch.setattr(tieorder, "top_k", lambda column, k: np.array([97, 24, 26, 28, 27]))  # two swapped
    assert compute("writeup_dim0_origin", run) == SELECTED
    monkeypatch.setattr(tieorder, "top_k", lambda column, k: np.array([97, 24, 26, 27, 28]))
    assert compute("writeup_dim0_origin", run) == TIE_ORDER


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


def test_topic_metrics_are_none_without_a_live_dimension(tmp_path: Path) -> None:
    run = fake_run(tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{"prompt": JS}] * 5)
    assert METRICS["topic_max_pvalue_javascript_web"].compute(run) is None


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
