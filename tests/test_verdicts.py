"""Verdicts beside the untrained control and the alternative readings; the control stage; what the
write-up's own numbers imply; the family-wise topic test and its power."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch

from replication.config import TrainConfig
from replication.evaluation import metrics, topics
from replication.evaluation import writeup as implied
from replication.evaluation.claims import Claim, Reading, load_claims
from replication.evaluation.verdicts import Outcome, Result, control_of, evaluate, evaluate_all, outcome
from replication.rundir import layout
from replication.rundir.reader import RunData, Untestable
from replication.sae.training import train_sae


def claim(**fields: object) -> Claim:
    base: dict[str, object] = {
        "id": "t.x",
        "section": "T",
        "quote": "q",
        "kind": "measured",
        "metric": "stop_epoch",
        "op": "ge",
        "value": 5,
        "profiles": ("tiny",),
    }
    return Claim(**(base | fields))  # type: ignore[arg-type]


def result(verdict: str, control: str | None, alternatives: tuple[str, ...] = ()) -> Result:
    return Result(
        claim(),
        verdict,  # type: ignore[arg-type]
        "≥ 5",
        7,
        "train/history.json",
        None if control is None else Outcome(control, "≥ 5", 6),  # type: ignore[arg-type]
        tuple(Outcome(v, "x", 1) for v in alternatives),  # type: ignore[arg-type]
    )


def test_holds_untrained_only_when_both_replicate() -> None:
    assert result("replicated", "replicated").holds_untrained
    assert not result("replicated", "not replicated").holds_untrained
    assert not result("not replicated", "replicated").holds_untrained
    assert not result("replicated", None).holds_untrained


def test_reading_dependent_when_a_decided_alternative_disagrees() -> None:
    assert result("replicated", None, ("not replicated",)).reading_dependent
    assert not result("replicated", None, ("replicated",)).reading_dependent
    assert not result("replicated", None, ("inconclusive",)).reading_dependent
    assert not result("inconclusive", None, ("replicated",)).reading_dependent


def test_the_control_is_the_untrained_sae(tiny_run: Path) -> None:
    """Same seed, no optimiser step: its weights are the trained SAE's initial ones, and its one
    history row is the trained run's epoch 1 forward pass (computed before that epoch's step)."""
    run, control = RunData(tiny_run), control_of(RunData(tiny_run))
    assert control is not None
    d_in, d_hidden = run.sae.d_in, run.sae.d_hidden  # loading an SAE draws from the RNG: before the seed
    torch.manual_seed(run.config.train.seed)
    encoder = torch.nn.Linear(d_in, d_hidden)
    torch.testing.assert_close(control.sae.encoder.weight, encoder.weight, rtol=0, atol=0)
    assert not torch.equal(run.sae.encoder.weight, encoder.weight)
    (row,) = control.history
    for key in ("train_loss", "train_mse", "l1_loss", "sparsity"):
        assert row[key] == pytest.approx(run.history[0][key], rel=1e-6), key
    assert control.path(layout.CODES) == tiny_run / layout.CONTROL / layout.CODES
    assert control.path(layout.ACTIVATIONS) == tiny_run / layout.ACTIVATIONS  # the run's own capture


def test_every_result_has_a_control_value_where_it_should(tiny_run: Path) -> None:
    results = {r.claim.id: r for r in evaluate_all(load_claims(), RunData(tiny_run))}
    # A measured claim about the SAE: its control value is measured on control/, the untrained SAE's codes.
    run = RunData(tiny_run)
    on_codes = claim(metric="sample_code_zero_fraction", op="gt", value=0.0)
    result = evaluate(on_codes, run, control_of(run))
    assert result.control is not None
    untrained = RunData(tiny_run, overlay=layout.CONTROL)
    assert result.control.measured == pytest.approx(float((untrained.codes == 0).mean()))
    assert result.control.measured != result.measured
    # Setup, implied and capture claims have none.
    for cid in ("part3.l1_penalty", "part3.implied_learning", "part2.sample_shape", "part4.dead_dims_tie_list"):
        assert results[cid].control is None, cid


def test_untestable_metric_gives_its_own_verdict(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = metrics.METRICS["stop_epoch"]
    monkeypatch.setitem(
        metrics.METRICS, "stop_epoch", metrics.Metric("stop_epoch", lambda run: Untestable("why"), spec.evidence, "")
    )
    got = outcome(claim(), RunData(tiny_run))
    assert got.verdict == "not testable with this corpus" and got.measured == "not testable: why"
    assert evaluate(claim(profiles=("seed",)), RunData(tiny_run)).verdict == "not testable at this profile"
    alternative = Reading(metric="stop_epoch", op="le", value=1)
    assert evaluate(claim(alternatives=(alternative,)), RunData(tiny_run)).alternatives[0].verdict == (
        "not testable with this corpus"
    )


def test_untrained_training_takes_no_step() -> None:
    torch.manual_seed(0)
    train_x, val_x = torch.randn(12, 4), torch.randn(3, 4)
    trained = train_sae(train_x, val_x, TrainConfig(max_epochs=3), progress=False)
    untrained = train_sae(train_x, val_x, TrainConfig(max_epochs=3), progress=False, untrained=True)
    assert len(untrained.history) == 1 and untrained.best_epoch == 0
    assert untrained.history[0]["train_loss"] == pytest.approx(trained.history[0]["train_loss"], rel=1e-6)
    assert not torch.equal(untrained.sae.encoder.weight, trained.sae.encoder.weight)


def test_what_the_writeups_numbers_imply_by_hand() -> None:
    assert implied.best_epoch().value == 1  # 6 - 5
    assert implied.final_code_mass().value == pytest.approx(13.3)  # 0.0133 / 0.001
    assert implied.code_mass_ratio().value == pytest.approx(0.0133 / 17)
    # The sparsity 0.5578 = Phi(0.01 / s) for a normal pre-activation of scale s; E[ReLU] = s / sqrt(2 pi).
    s = 0.01 / NormalDist().inv_cdf(0.5578)
    predicted = 0.001 * 78 * 8192 * s / math.sqrt(2 * math.pi)
    assert implied.init_l1_from_sparsity().value == pytest.approx(predicted / 17, rel=1e-6)
    assert 1.0 < predicted / 17 < 1.1


def test_the_max_hits_test_by_hand() -> None:
    # 10 prompts, the first 3 of the topic; 2 features of top 3.
    is_topic = np.array([True, True, True] + [False] * 7)
    top = np.array([[0, 1, 5], [6, 7, 8]])
    positive = np.ones_like(top, dtype=bool)
    test = topics.max_hits_test(top, positive, is_topic)
    assert test.observed == 2
    # Best possible: a feature with all 3 topic prompts. Under shuffled labels one of 3 rows (two
    # real, one planted stand-in) holds all 3 topic prompts with probability about 3 / C(10, 3) = 0.025.
    assert test.best_p == pytest.approx(3 / 120, abs=0.012)
    assert test.testable
    assert test.power[3] == 1.0 and test.power[1] == 0.0  # a planted 3-of-3 feature is found, 1-of-3 never
    positive[0, 0] = False  # a zero code is not a hit
    assert topics.max_hits_test(top, positive, is_topic).observed == 1
    # Planted among the real features: a real 3-of-3 feature is found whatever is planted beside it.
    real = topics.max_hits_test(np.array([[0, 1, 2], [6, 7, 8]]), np.ones((2, 3), dtype=bool), is_topic)
    assert real.observed == 3 and real.p < 0.05 and real.power[1] == 1.0


def test_a_topic_too_small_is_not_testable() -> None:
    is_topic = np.zeros(20, dtype=bool)
    is_topic[0] = True
    top = np.arange(40).reshape(8, 5) % 20
    test = topics.max_hits_test(top, np.ones_like(top, dtype=bool), is_topic)
    assert not test.testable and test.best_p > 0.05  # one topic prompt: 8 features all but ensure a hit
