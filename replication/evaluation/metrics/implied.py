"""Metrics of the write-up's own numbers (``evaluation.writeup``) and its dimension-0 list: no run needed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from replication.evaluation import writeup
from replication.evaluation.metrics.registry import register
from replication.rundir.reader import RunData
from replication.sae import tieorder

WRITEUP = "fixtures/writeup.md"


def writeup_dimension0() -> list[int]:
    """The corpus indices of the five prompts the write-up lists for its dimension 0, in its order."""
    corpus = writeup.CORPUS_FILE.read_text(encoding="utf-8").splitlines()
    return [corpus.index(prompt) for prompt in writeup.writeup_listed_prompts(1)]  # its "Feature 1"


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


def _derived(derive: Callable[[], writeup.Derivation], run: RunData) -> float:
    return derive().value


DERIVED = {
    f"implied_{name}": derive
    for name, derive in writeup.DERIVATIONS.items()
    if name not in ("final_code_mass", "first_code_mass")  # the steps to code_mass_ratio
}
"""The metrics of the write-up's own numbers, each a derivation of ``evaluation.writeup``."""
for _name, _derivation in DERIVED.items():
    register(_name, WRITEUP, f"From the write-up's numbers: {_derivation().steps}.", partial(_derived, _derivation))
