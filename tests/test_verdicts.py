"""Verdicts beside the untrained control and the alternative readings; the control stage; what the
write-up's own numbers imply; the family-wise topic test and its power."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
from helpers import claim

from replication.config import TrainConfig
from replication.evaluation import metrics, topics
from replication.evaluation import writeup as implied
from replication.evaluation.claims import Reading, load_claims
from replication.evaluation.verdicts import combine, compare, evaluate, evaluate_all
from replication.rundir import layout
from replication.rundir.reader import RunData, Untestable, control_of
from replication.sae.training import train_sae


def test_the_untrained_sae_decides(tiny_run: Path) -> None:
    """The same comparison on the run and on its control: met by both is no evidence (the untrained SAE
    does the same), by the run only replicated, by the control only no evidence (no outcome could have
    supported the claim: a run meeting it would be met untrained too)."""
    run = RunData(tiny_run)
    control = control_of(run)
    assert control is not None
    zeros = float((run.codes == 0).mean())
    untrained = float((control.codes == 0).mean())
    assert zeros != untrained
    low, high = sorted((zeros, untrained))
    below_both = claim(metric="sample_code_zero_fraction", op="gt", value=low / 2)
    above = claim(metric="sample_code_zero_fraction", op="gt", value=(low + high) / 2)
    below = claim(metric="sample_code_zero_fraction", op="lt", value=(low + high) / 2)
    met_untrained = evaluate(below_both, run, control)
    assert (met_untrained.verdict, met_untrained.why) == ("no evidence", "the untrained SAE does the same")
    run_only, control_only = (above, below) if zeros > untrained else (below, above)
    assert evaluate(run_only, run, control).verdict == "replicated"
    result = evaluate(control_only, run, control)
    assert result.verdict == "no evidence" and not result.finding
    assert result.why == "only the untrained SAE meets it, so no result could support it"
    neither = claim(metric="sample_code_zero_fraction", op="gt", value=high * 1.5)
    assert evaluate(neither, run, control).verdict == "not replicated"
    assert evaluate(below_both, run).verdict == "replicated"  # no control: nothing to judge by


def test_words_fit_the_kind(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    epochs = len(run.history)
    for kind, words in (("setup", ("conforms", "differs")), ("implied", ("supported", "not supported"))):
        assert evaluate(claim(kind=kind, value=epochs), run).verdict == words[0]
        assert evaluate(claim(kind=kind, value=epochs + 1), run).verdict == words[1]
    assert evaluate(claim(value=epochs + 1), run).verdict == "not replicated"


def test_reading_dependent_when_a_decided_alternative_disagrees(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    epochs = len(run.history)
    agrees, disagrees = (
        Reading(metric="stop_epoch", op="ge", value=1),
        Reading(metric="stop_epoch", op="gt", value=epochs),
    )
    assert evaluate(claim(value=1, alternatives=(disagrees,)), run).reading_dependent
    assert not evaluate(claim(value=1, alternatives=(agrees,)), run).reading_dependent


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
    got = compare(claim(), RunData(tiny_run), "measured")
    assert got.verdict == "no evidence" and got.measured == "not testable: why" and got.holds is None
    assert got.why == "the test cannot detect an effect the size of the write-up's"
    elsewhere = evaluate(claim(profiles=("seed",)), RunData(tiny_run))
    assert (elsewhere.verdict, elsewhere.why) == ("no evidence", "it needs the 8B model")
    alternative = Reading(metric="stop_epoch", op="le", value=1)
    assert evaluate(claim(alternatives=(alternative,)), RunData(tiny_run)).alternatives[0].verdict == "no evidence"


UNTRAINED = ("no evidence", "the untrained SAE does the same")
NO_POWER = ("no evidence", "the test cannot detect an effect the size of the write-up's")
SPLIT = ("no evidence", "the seeds disagree")


@pytest.mark.parametrize(
    ("seeds", "combined"),
    [
        ([("replicated", None)] * 3, ("replicated", None)),
        ([("replicated", None), ("not replicated", None)], SPLIT),
        # A control on the threshold: untrained in one seed, replicated in the others.
        ([("replicated", None), UNTRAINED, ("replicated", None)], UNTRAINED),
        ([UNTRAINED, ("replicated", None), ("replicated", None)], UNTRAINED),
        ([("replicated", None), UNTRAINED, ("not replicated", None)], SPLIT),
        ([NO_POWER, UNTRAINED, ("not replicated", None)], ("not replicated", None)),
        ([NO_POWER, UNTRAINED, NO_POWER], NO_POWER),
        ([UNTRAINED, NO_POWER, NO_POWER, UNTRAINED], UNTRAINED),
    ],
)
def test_seeds_combine(seeds: list[tuple[str, str | None]], combined: tuple[str, str | None]) -> None:
    assert combine(seeds) == combined


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
    # 10 prompts, the first 3 of the topic; 2 features of top 3, disjoint.
    is_topic = np.array([True, True, True] + [False] * 7)
    top = np.array([[0, 1, 5], [6, 7, 8]])
    positive = np.ones_like(top, dtype=bool)
    test = topics.max_hits_test(top, positive, is_topic, ["decode"] * 10)
    assert test.observed == 2
    # Under shuffled labels each row holds all 3 topic prompts with probability 1 / C(10, 3) = 1/120,
    # and the two rows cannot both: P(max >= 3) = 2 / 120 = 0.017. A row holds >= 2 with probability
    # (C(3,2) C(7,1) + 1) / 120 = 22 / 120, and both rows at once would need 4: P(max >= 2) = 44 / 120.
    assert test.tail[3] == pytest.approx(2 / 120, abs=0.008)
    assert test.tail[2] == pytest.approx(44 / 120, abs=0.03)
    assert test.threshold == 3 and test.reachable == 3 and test.best_p == test.tail[3]
    assert test.p == test.tail[2]
    positive[0, 0] = False  # a zero code is not a hit
    assert topics.max_hits_test(top, positive, is_topic, ["decode"] * 10).observed == 1


def test_a_topic_too_small_is_not_testable() -> None:
    is_topic = np.zeros(20, dtype=bool)
    is_topic[0] = True
    top = np.arange(40).reshape(8, 5) % 20
    test = topics.max_hits_test(top, np.ones_like(top, dtype=bool), is_topic, ["decode"] * 20)
    # One topic prompt: every prompt sits in 2 of the 8 top-5 rows, so a hit is certain, p = 1.
    assert test.threshold is None and test.best_p == 1.0
