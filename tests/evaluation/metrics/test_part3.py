"""Metrics of Part 3 (``metrics/part3.py``) on hand-built runs: the SAE, its settings, history and codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    compute,
    fake_run,
)

from replication.config import load_profile
from replication.evaluation.metrics import METRICS
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.autoencoder import SparseAutoencoder

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
