"""Metrics of Part 3: the SAE, its training history, its health, and the splice test."""

from __future__ import annotations

import math
import operator
from functools import partial

import numpy as np
import torch

from replication.evaluation import health
from replication.evaluation.metrics.initial import l0_reach, sparsity_epoch1_detail
from replication.evaluation.metrics.registry import Reach, metric, register
from replication.rundir import layout
from replication.rundir.reader import RunData

for _name, _definition in (
    ("d_in", "Input width of the trained SAE's encoder."),
    ("d_hidden", "Code width of the trained SAE (encoder output)."),
):
    register(f"sae_{_name}", layout.SAE, _definition, operator.attrgetter(f"sae.{_name}"))


@metric(layout.CODES)
def encoder_activation(run: RunData) -> str:
    """The encoder's output activation as its codes show it: "relu" when every code is >= 0 and some
    are exactly 0 (negative pre-activations cut), else "other"."""
    return "relu" if bool((run.codes >= 0).all() and (run.codes == 0).any()) else "other"


for _name, _field, _definition in (
    ("decoder_activation", "decoder_activation", "The activation on the decoder output (relu = the original)."),
    ("l1_coefficient", "l1_coefficient", "The L1 coefficient the run trained with."),
    ("learning_rate", "lr", "The Adam learning rate the run trained with."),
    ("patience", "patience", "Early-stopping patience the run trained with."),
    ("max_epochs", "max_epochs", "Upper bound on epochs the run trained with."),
):
    register(_name, layout.CONFIG, _definition, operator.attrgetter(f"config.train.{_field}"))


@metric(layout.HISTORY)
def history_tracks_metrics(run: RunData) -> bool:
    """Every epoch's record holds the reconstruction loss, the L1 loss and the sparsity."""
    return all({"train_mse", "l1_loss", "sparsity", "val_loss"} <= set(row) for row in run.history)


@metric(layout.HISTORY, detail=sparsity_epoch1_detail)
def sparsity_epoch1(run: RunData) -> float:
    """Fraction of training codes with |z| < 0.01 in epoch 1."""
    return run.history[0]["sparsity"]


@metric(layout.HISTORY)
def first_full_sparsity_epoch(run: RunData) -> int | str:
    """First epoch whose sparsity prints as 1.0000 (>= 0.99995); "never" if none did."""
    epochs = [int(r["epoch"]) for r in run.history if r["sparsity"] >= 0.99995]
    return epochs[0] if epochs else "never"


@metric(layout.HISTORY)
def stop_epoch(run: RunData) -> int:
    """The last epoch trained before early stopping (or the epoch limit)."""
    return len(run.history)


def _epoch_value(epoch: int, key: str, run: RunData) -> float:
    return run.history[epoch][key]


for _name, _epoch, _key, _definition in (
    ("first_train_loss", 0, "train_loss", "Epoch 1's train loss (MSE + L1 term)."),
    ("final_train_loss", -1, "train_loss", "The last epoch's train loss (MSE + L1 term), as the original printed it."),
    ("final_val_loss", -1, "val_loss", "The last epoch's validation MSE."),
):
    register(_name, layout.HISTORY, _definition, partial(_epoch_value, _epoch, _key))


@metric(layout.HISTORY)
def train_loss_drop(run: RunData) -> float:
    """Epoch 1's train loss over the last epoch's (17 -> 0.013 is about 1300)."""
    return run.history[0]["train_loss"] / run.history[-1]["train_loss"]


def relu_decoder_floor(run: RunData) -> Reach | None:
    """A decoder that ends in a ReLU outputs no negative value: its FVU is at least that of the best
    non-negative reconstruction, max(x, 0) (``health.relu_fvu_floor``)."""
    if run.config.train.decoder_activation != "relu":
        return None
    return Reach(
        health.relu_fvu_floor(run.split[1]),
        math.inf,
        "a decoder ending in a ReLU cannot output negative values, so its FVU is at least "
        "sum(min(x, 0)^2) / sum((x - mean)^2) of the validation rows",
    )


@metric(layout.SAE, reach=relu_decoder_floor)
def val_fvu(run: RunData) -> float:
    """Fraction of variance unexplained by the best SAE on the validation samples' real rows
    (padding excluded): 0 is perfect, 1.0 is no better than predicting their mean."""
    val = run.split[1]
    return health.fvu(val, run.reconstruct(val))


@metric(layout.ACTIVATIONS)
def val_mean_predictor_fvu(run: RunData) -> float:
    """The baseline: FVU of predicting every validation row by the training rows' mean."""
    train, val = run.split
    return health.mean_predictor_fvu(val, train.mean(axis=0))


@metric(layout.SAE)
def train_fvu(run: RunData) -> float:
    """FVU of the best SAE on the training samples' real rows (padding excluded)."""
    train = run.split[0]
    return health.fvu(train, run.reconstruct(train))


def _splice_value(key: str, run: RunData) -> float | None:
    """One number of the splice test; None for a run without a splice stage."""
    return None if run.splice is None else run.splice.get(key)  # type: ignore[no-any-return]


for _key, _definition in (
    ("ce_clean", "Mean next-token cross-entropy (nats) of the model on the captured sequences."),
    ("ce_sae", "The same with the hooked layer's output replaced, at every position, by the SAE's reconstruction."),
    ("ce_zero", "The same with the hooked layer's output replaced by zeros."),
    ("ce_mean", "The same with the hooked layer's output replaced by its mean over every scored position."),
    ("ce_uniform", "ln(vocabulary size): the cross-entropy of uniform logits, a model that predicts nothing."),
    (
        "ce_loss_recovered",
        "(ce_zero - ce_sae) / (ce_zero - ce_clean): 1 = the spliced SAE loses nothing, 0 = no better than "
        "zeroing the layer's output, < 0 = worse than that.",
    ),
    ("ce_loss_recovered_mean", "(ce_mean - ce_sae) / (ce_mean - ce_clean): the same against mean-ablation."),
    (
        "captured_ce_loss_recovered",
        "ce_loss_recovered at the positions the samples hold (those the SAE's rows come from: a decode step's "
        "one, a prefill's prompt), replaced there only and scored on the predictions made there.",
    ),
    ("captured_ce_loss_recovered_mean", "The same against mean-ablation (the mean of the samples' rows)."),
):
    register(_key, layout.SPLICE, _definition, partial(_splice_value, _key))


@metric(layout.CODES)
def never_active_fraction(run: RunData) -> float:
    """Fraction of code dimensions that are zero on every encoded sample (dead on the dataset)."""
    return health.dead_fraction(run.codes)


@metric(layout.ACTIVATIONS)
def padding_row_fraction(run: RunData) -> float:
    """Fraction of the SAE's training rows that are zero padding (0 when every sample is (1,1,d),
    and for a per-token dataset, which is never padded)."""
    if run.config.capture.positions == "all":
        return 0.0
    t_max = max(s.shape[1] for s in run.activations)
    return 1.0 - len(run.split[0]) / (t_max * run.split_index)


@metric(layout.CODES, reach=l0_reach)
def sample_code_l0(run: RunData) -> float:
    """Mean number of non-zero code dimensions per encoded sample (best SAE)."""
    return float(health.l0(run.codes).mean())


@metric(layout.CODES)
def sample_code_zero_fraction(run: RunData) -> float:
    """Fraction of the encoded samples' code values that are exactly 0 (best SAE)."""
    return float((run.codes == 0).mean())


@metric(layout.CODES)
def median_nonzero_code(run: RunData) -> float | None:
    """Median of the non-zero code values of the encoded samples."""
    positive = run.codes[run.codes > 0]
    return float(np.median(positive)) if positive.size else None


@metric(layout.SAE)
def tied_weights(run: RunData) -> bool:
    """Whether the decoder's weight is the encoder's, transposed (tied), in the trained SAE."""
    return bool(torch.equal(run.sae.decoder.weight, run.sae.encoder.weight.T))


@metric(layout.HISTORY)
def loss_is_mse_plus_l1(run: RunData) -> bool:
    """Every epoch's train loss is its reconstruction MSE plus l1_coefficient x its L1 term (to 1e-5)."""
    coefficient = run.config.train.l1_coefficient
    return all(
        abs(r["train_loss"] - (r["train_mse"] + coefficient * r["l1_loss"])) <= 1e-5 * max(abs(r["train_loss"]), 1e-12)
        for r in run.history
    )


@metric(layout.HISTORY)
def early_drop_share(run: RunData) -> float | None:
    """Share of the first-to-last drop of the train loss made in the first half of the epochs."""
    losses = [r["train_loss"] for r in run.history]
    if len(losses) < 3 or losses[0] == losses[-1]:
        return None
    half = (len(losses) - 1) // 2
    return (losses[0] - losses[half]) / (losses[0] - losses[-1])


def _validation_curve(run: RunData) -> str:
    """Where the validation loss started, was lowest and ended: a flat curve can still rise."""
    losses = [r["val_loss"] for r in run.history]
    best = int(np.argmin(losses))
    lowest = f"lowest {losses[best]:.4g} in epoch {best + 1}"
    tail = losses[-run.config.train.patience :]
    late = f"over the last {len(tail)} epochs between {min(tail):.4g} and {max(tail):.4g}"
    return f"validation loss {losses[0]:.4g} in epoch 1, {lowest}, {losses[-1]:.4g} in the last; {late}"


@metric(layout.HISTORY, detail=_validation_curve)
def val_loss_late_range(run: RunData) -> float | None:
    """Spread of the validation loss over the last ``patience`` epochs, (max - min) / min."""
    tail = [r["val_loss"] for r in run.history][-run.config.train.patience :]
    if len(tail) < 2:
        return None
    return (max(tail) - min(tail)) / min(tail)
