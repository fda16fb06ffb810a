"""Part 3 training: the initial weights, the full-batch and minibatch loops, early stopping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from replication.config import TrainConfig
from replication.errors import ReplicationError
from replication.sae.training import EarlyStopping, build_sae, minibatches, train_sae


def test_early_stopping_on_a_constructed_curve() -> None:
    curve = [5.0, 4.0, 4.5, 4.2, 4.0, 4.3, 4.1, 3.0]  # 4.0 again at epoch 5 is no improvement
    model = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=5)
    stopped = None
    for epoch, value in enumerate(curve, start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        if stopper.update(epoch, value, model):
            stopped = epoch
            break
    assert stopped == 7
    assert stopper.best_epoch == 2 and stopper.best == 4.0
    assert stopper.best_state["weight"].item() == 4.0


def test_training_stops_early_and_reloads_the_best_state() -> None:
    torch.manual_seed(0)
    train_x, val_x = torch.randn(40, 8), torch.randn(10, 8)
    # A large step makes validation worsen after the first epochs.
    cfg = TrainConfig(lr=0.5, patience=2, max_epochs=50)
    result = train_sae(train_x, val_x, cfg, progress=False)
    val = [row["val_loss"] for row in result.history]
    assert len(val) < 50, "the constructed run must stop early"
    assert result.best_epoch == val.index(min(val)) + 1 < len(val)
    assert len(val) == result.best_epoch + cfg.patience
    with torch.no_grad():
        reloaded = F.mse_loss(result.sae(val_x)[0], val_x).item()
    assert reloaded == pytest.approx(min(val), rel=1e-6)
    assert result.last_codes.shape == (40, 16)
    assert set(result.history[0]) == {"epoch", "train_loss", "train_mse", "l1_loss", "val_loss", "sparsity"}


def test_history_rows_add_up() -> None:
    torch.manual_seed(1)
    cfg = TrainConfig(max_epochs=3)
    result = train_sae(torch.randn(20, 4), torch.randn(5, 4), cfg, progress=False)
    for row in result.history:
        assert row["train_loss"] == pytest.approx(row["train_mse"] + 0.001 * row["l1_loss"], rel=1e-5)
        assert 0.0 <= row["sparsity"] <= 1.0


def test_non_finite_loss_names_the_epoch() -> None:
    train_x = torch.randn(10, 4)
    train_x[3, 1] = float("nan")
    with pytest.raises(ReplicationError, match="at epoch 1"):
        train_sae(train_x, torch.randn(4, 4), TrainConfig(), progress=False)


def test_minibatches_cover_every_row_once_per_epoch() -> None:
    generator = torch.Generator().manual_seed(0)
    (full,) = minibatches(7, TrainConfig(), generator)
    assert full.tolist() == list(range(7))  # batch_size 0: the original's one full batch, in order
    batches = minibatches(7, TrainConfig(batch_size=3), generator)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(torch.cat(batches).tolist()) == list(range(7))
    again = minibatches(7, TrainConfig(batch_size=3), generator)
    assert torch.cat(again).tolist() != torch.cat(batches).tolist()  # a fresh order each epoch


def test_one_minibatch_of_all_rows_is_full_batch_training() -> None:
    torch.manual_seed(2)
    train_x, val_x = torch.randn(30, 4), torch.randn(6, 4)
    full = train_sae(train_x, val_x, TrainConfig(max_epochs=4), progress=False)
    shuffled = train_sae(train_x, val_x, TrainConfig(max_epochs=4, batch_size=30), progress=False)
    for a, b in zip(full.history, shuffled.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    torch.testing.assert_close(full.last_codes, shuffled.last_codes, rtol=1e-5, atol=1e-6)


def test_standard_training_keeps_unit_decoder_directions_and_averages_the_epoch() -> None:
    torch.manual_seed(3)
    cfg = TrainConfig(
        max_epochs=3, decoder_activation="linear", decoder_norm="unit", l1_reduction="sample_mean", batch_size=8
    )
    result = train_sae(torch.randn(20, 4), torch.randn(5, 4), cfg, progress=False)
    torch.testing.assert_close(result.sae.decoder.weight.norm(dim=0), torch.ones(8))
    for row in result.history:  # row-weighted means over the epoch's steps: the identity still holds
        assert row["train_loss"] == pytest.approx(row["train_mse"] + 0.001 * row["l1_loss"], rel=1e-5)
    assert result.last_codes.shape == (20, 8)


def test_initial_weights_match_a_plain_reimplementation() -> None:
    """torch.manual_seed(seed), then Linear(d, 2d) and Linear(2d, d): the original's init."""
    sae = build_sae(8, TrainConfig(seed=3))
    torch.manual_seed(3)
    encoder, decoder = nn.Linear(8, 16), nn.Linear(16, 8)
    torch.testing.assert_close(sae.encoder.weight, encoder.weight, rtol=0, atol=0)
    torch.testing.assert_close(sae.decoder.bias, decoder.bias, rtol=0, atol=0)
    assert not torch.equal(build_sae(8, TrainConfig(seed=4)).encoder.weight, encoder.weight)
