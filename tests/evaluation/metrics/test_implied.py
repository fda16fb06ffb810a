"""The write-up's own numbers (``metrics/implied.py``): each derivation worked out by hand from its quotes."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from helpers import (
    REPO_ROOT,
    compute,
)

from replication.evaluation.metrics.implied import SELECTED, TIE_ORDER, writeup_dimension0
from replication.rundir.reader import RunData
from replication.sae import tieorder

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
