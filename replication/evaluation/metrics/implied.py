"""Metrics of the write-up's own numbers (``evaluation.writeup``) and its dimension-0 list: no run needed."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import numpy as np

from replication.config import REPO_ROOT
from replication.evaluation import writeup as implied
from replication.evaluation.metrics.registry import register
from replication.rundir.reader import RunData
from replication.sae import tieorder

WRITEUP = "fixtures/writeup.md"


def writeup_listed_prompts(feature: int) -> list[str]:
    """The first five prompts the write-up lists for its Feature ``feature`` (for Feature 3, its
    Dimension 36's), in its order."""
    text = (REPO_ROOT / WRITEUP).read_text(encoding="utf-8")
    block = text.split(f"### Feature {feature}", 1)[1].split("* **Interpretation:**", 1)[0]
    return re.findall(r"^\s*\d\.\s+(.*?) \(Activation: ", block, flags=re.MULTILINE)[:5]


def writeup_listed(feature: int) -> list[int]:
    """Their indices in the study's corpus (fixtures/prompts.txt)."""
    corpus = (REPO_ROOT / "fixtures" / "prompts.txt").read_text(encoding="utf-8").splitlines()
    return [corpus.index(prompt) for prompt in writeup_listed_prompts(feature)]


def writeup_dimension0() -> list[int]:
    """The corpus indices of the five prompts the write-up lists for its dimension 0, in its order."""
    return writeup_listed(1)


TIE_ORDER = "the top 5 of 98 equal values (numpy 1.24's tie order)"
SELECTED = "selected by a feature"


def _dimension0_origin(run: RunData) -> str:
    """What the write-up's dimension-0 list is: numpy 1.24's top 5 of 98 equal values, or not."""
    tie_order = writeup_dimension0() == tieorder.top_k(np.zeros(98, dtype=np.float32), 5).tolist()
    return TIE_ORDER if tie_order else SELECTED


def with_writeup_list(run: RunData) -> list[int]:
    """The dimensions whose top 5 are the write-up's dimension-0 prompts in its order (dead ones, by tie order)."""
    listed = writeup_dimension0()
    return [d["dim"] for d in run.top["dimensions"] if [t["index"] for t in d["top"]] == listed]


register(
    "writeup_dim0_origin",
    WRITEUP,
    "What the write-up's dimension-0 prompts (corpus 97, 24, 26, 27, 28, in its order) are: exactly what numpy "
    "1.24's argsort gives as the top 5 of 98 equal values -- a dead feature -- (replication/sae/tieorder.py; checked "
    "against numpy 1.24.4 itself by nox -s tieorder), or a selection by a feature.",
    _dimension0_origin,
    with_writeup_list,
)


def _derived(derive: Callable[[], implied.Derivation], run: RunData) -> float:
    return derive().value


for _name, _derivation in (
    ("implied_best_epoch", implied.best_epoch),
    ("implied_code_mass_ratio", implied.code_mass_ratio),
    ("implied_init_l1_ratio", implied.init_l1_from_sparsity),
):
    register(
        _name,
        WRITEUP,
        f"From the write-up's numbers: {_derivation().steps}.",
        partial(_derived, _derivation),
    )
