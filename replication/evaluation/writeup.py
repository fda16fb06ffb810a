"""What the write-up's own numbers imply, with the known method: arithmetic that needs no run.

Each derivation states its inputs (numbers quoted from the write-up, and facts of the original's
code from METHOD.md), its steps as text for the report, and its value. The claims of kind
``implied`` compare these values; they hold at every profile because nothing here is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

# The write-up's numbers (Part 3) and the original's code (METHOD.md).
STOP_EPOCH = 6  # "stopping early at epoch 6"
PATIENCE = 5  # "early stopping (patience=5)"
FINAL_TRAIN_LOSS = 0.0133  # "Final train loss = 0.0133"
FIRST_TRAIN_LOSS = 17.0  # "The training loss fell fast from 17"
SPARSITY_EPOCH1 = 0.5578  # "the sparsity metric rising from 0.5578 (epoch 1)"
THRESHOLD = 0.01  # "near-zero values (<0.01)"
L1 = 0.001  # "L1 Penalty: 0.001", multiplying the SUM of |z| over the batch
TRAIN_SAMPLES = 78  # int(0.8 * 98) samples, each (1, 1, 4096) as the write-up says
D_HIDDEN = 8192  # "Encoder Dimension: 8192"
CODE_VALUES = TRAIN_SAMPLES * D_HIDDEN  # code values in one full-batch forward pass


@dataclass(frozen=True)
class Derivation:
    """One implication: its value and the arithmetic that gives it."""

    name: str
    value: float
    steps: str
    meaning: str


def best_epoch() -> Derivation:
    best = STOP_EPOCH - PATIENCE
    return Derivation(
        "best epoch",
        best,
        f"stop at epoch {STOP_EPOCH} with patience {PATIENCE}: epochs {best + 1}-{STOP_EPOCH} all failed to improve "
        f"the best validation loss, so the best was epoch {STOP_EPOCH} - {PATIENCE} = {best}",
        f"the reloaded 'best' SAE had taken {best} full-batch Adam step; no epoch after the first improved validation",
    )


def final_code_mass() -> Derivation:
    bound = FINAL_TRAIN_LOSS / L1
    return Derivation(
        "final sum |z|",
        bound,
        f"train loss = MSE + {L1} x sum|z| over {TRAIN_SAMPLES} x {D_HIDDEN} = {CODE_VALUES} codes, MSE >= 0, "
        "so sum|z| <= "
        f"{FINAL_TRAIN_LOSS} / {L1} = {bound:.1f}, mean |z| <= {bound / CODE_VALUES:.2g}",
        "by the last epoch the codes are almost all zero: the decoder's input is nearly 0 for every sample",
    )


def first_code_mass() -> Derivation:
    bound = FIRST_TRAIN_LOSS / L1
    return Derivation(
        "epoch-1 sum |z|",
        bound,
        f"epoch 1's loss is computed before that epoch's step, on the SAE as initialised: sum|z| <= "
        f"{FIRST_TRAIN_LOSS:g} / {L1} = {bound:.0f}, mean |z| <= {bound / CODE_VALUES:.3f} -- "
        "about that, if the untrained "
        "SAE's MSE is small next to 17",
        "the 17 is essentially the untrained SAE's L1 penalty",
    )


def code_mass_ratio() -> Derivation:
    ratio = final_code_mass().value / first_code_mass().value
    return Derivation(
        "code mass left",
        ratio,
        f"final sum|z| bound / epoch-1 sum|z| bound = {final_code_mass().value:.1f} / {first_code_mass().value:.0f} "
        f"= {ratio:.2g}",
        "about this share of the codes' initial mass, or less, is left at the last epoch (assuming the epoch-1 MSE "
        "is small next to 17): the reconstruction there is close to the constant ReLU(b_dec) for every sample, so "
        "its low MSE measures the data's spread around a constant, not reconstruction",
    )


def init_l1_from_sparsity() -> Derivation:
    """The L1 term that the epoch-1 sparsity predicts for an untrained encoder.

    An untrained encoder's pre-activation u = W_e x + b_e is, over codes, close to a zero-mean
    normal N(0, s^2) (PyTorch's uniform init, 4096 inputs). Sparsity 0.5578 = P(ReLU(u) < 0.01) =
    Phi(0.01 / s), so s = 0.01 / Phi^-1(0.5578), and E[ReLU(u)] = s / sqrt(2 pi) per code.
    """
    sigma = THRESHOLD / float(norm.ppf(SPARSITY_EPOCH1))
    predicted = L1 * CODE_VALUES * sigma / math.sqrt(2 * math.pi)
    return Derivation(
        "epoch-1 L1 term from the sparsity",
        predicted / FIRST_TRAIN_LOSS,
        f"sparsity {SPARSITY_EPOCH1} = Phi(0.01 / s) gives s = {sigma:.4f}; E[ReLU(u)] = s / sqrt(2 pi) = "
        f"{sigma / math.sqrt(2 * math.pi):.4f}; {L1} x {CODE_VALUES} x that = {predicted:.1f}, "
        f"{predicted / FIRST_TRAIN_LOSS:.2f} x the reported {FIRST_TRAIN_LOSS:g}",
        "the loss of 17 and the sparsity 0.5578 are consistent with one untrained encoder (assuming zero-mean normal "
        "pre-activations; the encoder bias, up to 1/64, is ignored): both describe the initialisation, not learning",
    )


DERIVATIONS = (best_epoch, final_code_mass, first_code_mass, code_mass_ratio, init_l1_from_sparsity)
"""In the order the report shows them."""

CANNOT = (
    "The final train loss bounds the codes but not the MSE's share of it: the final reconstruction error alone "
    "is somewhere in [0, 0.0133].",
    "The best (epoch-1) SAE's own codes are not reported: how many of them are non-zero after its one Adam step "
    "(the write-up's 'only a few dimensions', e.g. 0.0230, 0.0196) cannot be derived; such values are of the "
    "untrained codes' size (mean |z| <= 0.027), far above the last epoch's bound.",
    "Whether 0.0142 is a low validation MSE depends on the variance of layer 10's activations, which the write-up "
    "does not give: a seed-profile run measures it (FVU).",
)
"""What the numbers do not determine, said so in the report."""
