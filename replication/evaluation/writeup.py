"""What the write-up's own numbers imply, with the known method: arithmetic that needs no run.

Each derivation gives its value and its steps as text for the report. The claims of kind ``implied``
compare these values; they hold at every profile because nothing here is measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from math import comb

from scipy.stats import norm

from replication.config import FIXTURES_DIR
from replication.evaluation import topics

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
LR = 0.001  # "Used Adam optimizer (`lr=0.001`)"
D_IN = 4096  # "Input/Output Dimension: 4096"
PRINTED_DIMS = 50  # the original prints the top prompts of dimensions 0-49 (METHOD.md)
TOP_K = 5  # prompts listed per dimension
WRITEUP_FILE = FIXTURES_DIR / "writeup.md"
CORPUS_FILE = FIXTURES_DIR / "prompts.txt"
WRITEUP_FEATURE = {"oop": 1, "javascript_web": 2, "testing": 3}
"""The write-up's feature (its "Feature N" section) that it reads as each topic."""
DRAWN = ("javascript_web", "testing")
"""The topics whose example list a chance draw could explain: the OOP one is dimension 0's, a tie order."""


def writeup_listed_prompts(feature: int) -> list[str]:
    """The first five prompts the write-up lists for its Feature ``feature`` (for Feature 3, its
    Dimension 36's), in its order."""
    text = WRITEUP_FILE.read_text(encoding="utf-8")
    block = text.split(f"### Feature {feature}", 1)[1].split("* **Interpretation:**", 1)[0]
    return re.findall(r"^\s*\d\.\s+(.*?) \(Activation: ", block, flags=re.MULTILINE)[:5]


def writeup_strength(topic: str) -> int:
    """How many of the five prompts the write-up lists for its ``topic`` feature carry the topic."""
    return topics.topic_labels(writeup_listed_prompts(WRITEUP_FEATURE[topic])).count(topic)


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
        f"so sum|z| <= {FINAL_TRAIN_LOSS} / {L1} = {bound:.1f}, mean |z| <= {bound / CODE_VALUES:.2g}",
        "by the last epoch the codes are almost all zero: the decoder's input is nearly 0 for every sample",
    )


def first_code_mass() -> Derivation:
    bound = FIRST_TRAIN_LOSS / L1
    return Derivation(
        "epoch-1 sum |z|",
        bound,
        f"epoch 1's loss is computed before that epoch's step, on the SAE as initialised: sum|z| <= "
        f"{FIRST_TRAIN_LOSS:g} / {L1} = {bound:.0f}, mean |z| <= {bound / CODE_VALUES:.3f} -- "
        "about that, if the untrained SAE's MSE is small next to 17",
        "the 17 is essentially the untrained SAE's L1 penalty",
    )


def code_mass_ratio() -> Derivation:
    final, first = final_code_mass().value, first_code_mass().value
    ratio = final / first
    return Derivation(
        "code mass left",
        ratio,
        f"final sum|z| bound / epoch-1 sum|z| bound = {final:.1f} / {first:.0f} = {ratio:.2g}",
        "about this share of the codes' initial mass, or less, is left at the last epoch (assuming the epoch-1 MSE "
        "is small next to 17): the reconstruction there is close to the constant ReLU(b_dec) for every sample, so "
        "its low MSE measures the data's spread around a constant, not reconstruction",
    )


def init_l1_from_sparsity() -> Derivation:
    """The L1 term that the epoch-1 sparsity predicts for an untrained encoder, whose pre-activations
    are close to N(0, s^2): sparsity = Phi(0.01 / s), and E[ReLU(u)] = s / sqrt(2 pi) per code."""
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


def adam_first_step_cosine(part: str) -> Derivation:
    """How far one Adam step can turn a weight row of PyTorch's default initialisation: Adam's first
    step is +-lr per weight, and w turned by d (|d| < |w|) keeps cosine >= sqrt(1 - |d|^2 / |w|^2)."""
    fan_in, n, what = (D_IN, D_IN, "encoder row") if part == "encoder" else (D_HIDDEN, D_IN, "decoder column")
    ratio = n * LR**2 / (n / (3 * fan_in))
    bound = math.sqrt(1 - ratio)
    return Derivation(
        f"{what} cosine after one Adam step",
        bound,
        f"a{'n' if what[0] in 'aeiou' else ''} {what} of {n} weights drawn from U(+-1/sqrt({fan_in})) has "
        f"squared norm {n} / (3 x {fan_in}) = {n / (3 * fan_in):.4f}; "
        + (
            f"Adam's first step moves each weight by at most lr = {LR} (+-lr wherever there is a gradient, "
            "whatever the loss's scale), "
            if part == "encoder"
            else "the same first step moves it by a "
        )
        + f"squared norm <= {n} x {LR}^2 = {n * LR**2:.6f}; so the {what} keeps "
        f"cosine >= sqrt(1 - {ratio:.5f}) = {bound:.4f} with its random initial value",
        (
            f"the best SAE (best epoch 1: one Adam step) kept every {what} at cosine >= {bound:.3f} with its random "
            "initialisation: the features the write-up read are random projections, and an L1 coefficient 10 times "
            "smaller changes the step only where the gradient's sign changes"
            if part == "encoder"
            else f"every {what} stayed at cosine >= {bound:.3f} with its start too"
        ),
    )


def chance_of_writeup_evidence(topic: str) -> Derivation:
    """How often chance alone gives a top 5 as rich in ``topic`` as the write-up's own example, among
    the dimensions it printed: a uniform null, every set of 5 of the 98 prompts equally likely."""
    labels = topics.topic_labels(CORPUS_FILE.read_text(encoding="utf-8").splitlines())
    size, n = labels.count(topic), len(labels)
    h = writeup_strength(topic)
    one = sum(comb(size, j) * comb(n - size, TOP_K - j) for j in range(h, TOP_K + 1)) / comb(n, TOP_K)
    some = 1 - (1 - one) ** PRINTED_DIMS
    terms = " + ".join(f"C({size},{j}) C({n - size},{TOP_K - j})" for j in range(h, min(size, TOP_K) + 1))
    return Derivation(
        f"chance of a '{topic}' top 5 like the write-up's",
        some,
        f"the write-up's '{topic}' feature lists {h} of 5 '{topic}' prompts ({size} of the {n}); a random top 5 "
        f"holds at least {h} with probability ({terms}) / C({n},{TOP_K}) = {one:.2g}, so at least one of the "
        f"{PRINTED_DIMS} dimensions the original printed does with probability 1 - (1 - {one:.2g})^{PRINTED_DIMS} "
        f"= {some:.2g}",
        f"chance alone shows a '{topic}' feature that strong among the dimensions read with probability {some:.2g}, "
        "before counting that a feature of any other topic would have been reported too",
    )


DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "best_epoch": best_epoch,
    "final_code_mass": final_code_mass,
    "first_code_mass": first_code_mass,
    "code_mass_ratio": code_mass_ratio,
    "init_l1_ratio": init_l1_from_sparsity,
    "encoder_init_cosine": partial(adam_first_step_cosine, "encoder"),
    "decoder_init_cosine": partial(adam_first_step_cosine, "decoder"),
    **{f"chance_{topic}": partial(chance_of_writeup_evidence, topic) for topic in DRAWN},
}
"""In the order the report shows them; the metric ``implied_<name>`` reads each but the two code-mass bounds."""
