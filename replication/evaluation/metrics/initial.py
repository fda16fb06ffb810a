"""Metrics of how far training moved the SAE from its initialisation (the control's untrained SAE).

The control keeps the SAE as initialised (same seed, no step), so each trained weight has its initial
value beside it. Adam moves a weight by about lr a step whatever the loss's scale, which bounds the change.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from replication.evaluation.metrics.registry import Reach, metric
from replication.rundir import layout
from replication.rundir.reader import RunData, control_of
from replication.sae.autoencoder import near_zero_fraction
from replication.sae.data import sample_rows


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b``."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(norms, 1e-30))


def adam_step_bound(step: int) -> float:
    """The most Adam's ``step``-th update can move one weight, in units of lr, whatever the gradients:
    |m_hat| / sqrt(v_hat) <= sqrt(sum_i a_i^2 / b_i) sqrt(1 - b2^t) / (1 - b1^t) by Cauchy-Schwarz, with
    a_i = (1 - b1) b1^(t - i) and b_i = (1 - b2) b2^(t - i) (1 at the first step)."""
    b1, b2 = 0.9, 0.999  # torch.optim.Adam's defaults, which the original and this package train with
    weights = sum(((1 - b1) * b1 ** (step - i)) ** 2 / ((1 - b2) * b2 ** (step - i)) for i in range(1, step + 1))
    return math.sqrt(weights) * math.sqrt(1 - b2**step) / (1 - b1**step)


def _radius(run: RunData) -> float | None:
    """The most any weight or bias of the best SAE can have moved: lr x the sum of Adam's step bounds
    over its steps. None without the control's untrained SAE, or with no step."""
    steps = adam_steps(run)
    if control_of(run) is None or steps == 0:
        return None
    return run.config.train.lr * sum(adam_step_bound(t) for t in range(1, steps + 1))


def _turn_bound(run: RunData, name: str, rows_of: str) -> Reach | None:
    """The least median cosine of a weight row with its initial value after the best SAE's steps: a
    row of n weights moved by at most sqrt(n) x ``_radius``, and w turned by d keeps cosine >=
    sqrt(1 - |d|^2 / |w|^2). None when that bounds nothing, or the decoder is renormalised."""
    radius, initial = _radius(run), control_of(run)
    if radius is None or initial is None or (name == "decoder.weight" and run.config.train.decoder_norm != "free"):
        return None
    start = _weights(initial)[name]
    rows = start if rows_of == "rows" else start.T
    moved = rows.shape[1] * radius**2
    norms = (rows.astype(np.float64) ** 2).sum(axis=1)
    if moved >= norms.min():
        return None
    low = float(np.median(np.sqrt(1 - moved / norms)))
    return Reach(
        low,
        1.0,
        f"given the {adam_steps(run)} Adam steps early stopping took (the best epoch), each weight moved by at "
        f"most {radius / run.config.train.lr:.3f} lr, so the median "
        f"{'encoder row' if rows_of == 'rows' else 'decoder column'} cannot have turned below this cosine with "
        "its initial value (each one's own bound follows its initial norm)",
        given=True,
    )


def l0_reach(run: RunData) -> Reach | None:
    """The mean number of codes on per encoded sample that the best SAE's steps allow: a pre-activation
    w.x + b moves by at most ``_radius`` x (|x|_1 + 1), so one above that untrained stays on, one below
    minus that stays off. None as ``_radius`` says."""
    radius, initial = _radius(run), control_of(run)
    if radius is None or initial is None:
        return None
    x = sample_rows(run.activations)[0].double().numpy()  # the rows the analysis encodes
    weights = _weights(initial)
    pre = x @ weights["encoder.weight"].astype(np.float64).T + weights["encoder.bias"].astype(np.float64)
    slack = radius * (np.abs(x).sum(axis=1, keepdims=True) + 1)
    low, high = float((pre - slack > 0).sum(axis=1).mean()), float((pre + slack > 0).sum(axis=1).mean())
    return Reach(
        low,
        high,
        f"given the {adam_steps(run)} Adam steps early stopping took (the best epoch), each encoder weight and "
        f"bias moved by at most {radius / run.config.train.lr:.3f} lr, so a code's pre-activation moved by at "
        "most that times (|x|_1 + 1): whatever the steps did, this many codes per sample, on average, are on",
        given=True,
    )


def _weights(run: RunData) -> dict[str, np.ndarray]:
    """The SAE's parameters as arrays, once per run."""
    return run.memo("weights", lambda: {name: t.detach().numpy() for name, t in run.sae.state_dict().items()})


def init_cosines(run: RunData, part: str) -> np.ndarray | None:
    """Each encoder row's (``part`` "encoder") or decoder column's ("decoder") cosine with its initial value
    (None without the control)."""
    initial = control_of(run)
    if initial is None:
        return None
    trained, start = _weights(run)[f"{part}.weight"], _weights(initial)[f"{part}.weight"]
    return row_cosines(trained, start) if part == "encoder" else row_cosines(trained.T, start.T)


@metric(layout.SAE, reach=lambda run: _turn_bound(run, "encoder.weight", "rows"))
def encoder_init_cosine(run: RunData) -> float | None:
    """Median over code dimensions of the cosine between the trained encoder row and its initial value
    (1 = not moved)."""
    cosines = init_cosines(run, "encoder")
    return None if cosines is None else float(np.median(cosines))


@metric(layout.SAE, reach=lambda run: _turn_bound(run, "decoder.weight", "columns"))
def decoder_init_cosine(run: RunData) -> float | None:
    """Median over code dimensions of the cosine between the trained decoder column (the feature's
    direction) and its initial value."""
    cosines = init_cosines(run, "decoder")
    return None if cosines is None else float(np.median(cosines))


@metric(layout.SAE)
def max_weight_change(run: RunData) -> float | None:
    """The largest |W - W0| over every weight and bias of the SAE."""
    initial = control_of(run)
    if initial is None:
        return None
    start = _weights(initial)
    return float(max(np.abs(value - start[name]).max() for name, value in _weights(run).items()))


@metric(layout.TRAIN_SUMMARY)
def adam_steps(run: RunData) -> int:
    """The optimiser steps the best (reloaded) SAE took: its epoch times the steps of an epoch (one
    full-batch step, or one per minibatch)."""
    summary, batch = run.train_summary, run.config.train.batch_size
    per_epoch = math.ceil(summary["train_rows"] / batch) if batch else 1
    return int(summary["best_epoch"]) * per_epoch


@metric(layout.SAE)
def weight_change_over_steps_lr(run: RunData) -> float | None:
    """max |W - W0| over steps x lr: about 1 when every step moved some weight by the full lr, as
    Adam's first steps do whatever the loss's scale."""
    change, steps = max_weight_change(run), adam_steps(run)
    return None if change is None or steps == 0 else change / (steps * run.config.train.lr)


def top_overlaps(run: RunData, other: RunData) -> list[int]:
    """For each of ``run``'s live dimensions, how many of its top prompts the same dimension of
    ``other`` has among its own."""
    theirs = {d["dim"]: {t["index"] for t in d["top"]} for d in other.top["dimensions"]}
    return [len({t["index"] for t in d["top"]} & theirs[d["dim"]]) for d in run.live]


@metric(layout.TOP_PROMPTS)
def top5_shared_with_untrained(run: RunData) -> float | None:
    """Share of live dimensions whose top 5 shares at least 4 prompts with the same dimension's top 5 in
    the untrained SAE."""
    initial = control_of(run)
    if initial is None:
        return None
    k = run.config.analyze.top_k - 1
    return float(np.mean([shared >= k for shared in top_overlaps(run, initial)])) if run.live else None


def _epoch1_codes(run: RunData) -> tuple[torch.Tensor, int] | None:
    """Epoch 1's codes of the real training rows, and the number of padding rows (each ReLU(b_enc)).
    The untrained SAE gives them: an epoch's forward pass comes before its step. None without the control."""
    initial = control_of(run)
    if initial is None:
        return None

    def encode() -> tuple[torch.Tensor, int]:
        real = run.split[0]
        with torch.no_grad():
            codes = initial.sae.encode(torch.from_numpy(real))
        padding = 0 if run.config.capture.positions == "all" else run.train_summary["train_rows"] - len(real)
        return codes, padding

    return run.memo("epoch1_codes", encode)


@metric(layout.SAE)
def sparsity_epoch1_real_rows(run: RunData) -> float | None:
    """Epoch 1's sparsity (codes with |z| < the threshold) on the training samples' real rows only."""
    epoch1 = _epoch1_codes(run)
    return None if epoch1 is None else near_zero_fraction(epoch1[0], run.config.train.sparsity_threshold)


@metric(layout.SAE)
def sparsity_epoch1_padding_rows(run: RunData) -> float | None:
    """Epoch 1's sparsity on the zero padding rows, each encoded to ReLU(b_enc)."""
    epoch1, initial = _epoch1_codes(run), control_of(run)
    if epoch1 is None or initial is None or epoch1[1] == 0:
        return None
    with torch.no_grad():
        return near_zero_fraction(torch.relu(initial.sae.encoder.bias), run.config.train.sparsity_threshold)


def sparsity_epoch1_detail(run: RunData) -> str:
    """Epoch 1's sparsity split into real rows and padding rows, with the padding's share."""
    epoch1 = _epoch1_codes(run)
    if epoch1 is None:
        return "no untrained SAE to split it by"
    real, padding = sparsity_epoch1_real_rows(run), sparsity_epoch1_padding_rows(run)
    rows = len(epoch1[0]) + epoch1[1]
    if padding is None:
        return f"every training row is real: {real:.4f}"
    return (
        f"real rows {real:.4f}, zero padding rows {padding:.4f}; padding is {epoch1[1] / rows:.0%} of the "
        f"{rows} training rows"
    )
