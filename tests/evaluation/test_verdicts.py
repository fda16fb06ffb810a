"""How a verdict is judged (verdicts.judge): the design's range, the steps taken, the untrained control,
the test's power, the seeds; and the measures it rests on, each by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from math import comb
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
from helpers import claim, fake_run, topic_run, whitebox_run

from replication.config import TrainConfig, load_profile
from replication.evaluation import health, metrics, stats, topics
from replication.evaluation import writeup as implied
from replication.evaluation.claims import Reading, load_claims
from replication.evaluation.metrics import METRICS, initial
from replication.evaluation.verdicts import combine, compare, evaluate, evaluate_all
from replication.outputs import findings
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, Untestable, control_of
from replication.sae.autoencoder import SparseAutoencoder
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
    for kind, words in (("setup", ("conforms", "differs")), ("implied", ("follows", "does not follow"))):
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
SHUFFLED = ("no evidence", "the same training on shuffled activations does the same")


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
        # A seed whose test fired, voided by its control, is not outvoted by seeds without power.
        ([NO_POWER, UNTRAINED, NO_POWER], UNTRAINED),
        ([UNTRAINED, NO_POWER, NO_POWER, UNTRAINED], UNTRAINED),
        ([("replicated", None), SHUFFLED], SHUFFLED),  # the curve's control straddles the threshold too
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
    # The same forward pass on the same weights: equal to the last bit (rel=1e-6 leaves room for none).
    assert untrained.history[0]["train_loss"] == pytest.approx(trained.history[0]["train_loss"], rel=1e-6)
    torch.manual_seed(TrainConfig().seed)  # the weights as built, not one step on
    torch.testing.assert_close(untrained.sae.encoder.weight, torch.nn.Linear(4, 8).weight, rtol=0, atol=0)
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


@pytest.mark.parametrize(
    ("op", "operands", "low", "high", "decided"),
    [
        ("gt", {"value": 0.5}, 1.0, 1.0, True),  # every allowed value is above
        ("gt", {"value": 0.5}, 0.0, 0.4, False),
        ("gt", {"value": 0.5}, 0.4, 0.6, None),
        ("ge", {"value": 0.5}, 0.5, 0.9, True),
        ("lt", {"value": 0.2}, 1.043, math.inf, False),  # the ReLU decoder's FVU floor
        ("lt", {"value": 0.2}, 0.0, math.inf, None),
        ("le", {"value": 0.2}, 0.0, 0.2, True),
        ("approx", {"value": 0.9, "abs": 0.05}, 1.0, 1.0, False),  # the exact-zero fraction of floats
        ("approx", {"value": 0.9, "abs": 0.05}, 0.86, 0.94, True),
        ("approx", {"value": 10, "rel": 0.1}, 8.0, 9.5, None),
        ("between", {"low": 1, "high": 10}, 0.0, 0.5, False),
        ("between", {"low": 1, "high": 10}, 0.0, 20.0, None),  # neither end meets it, the middle does
        ("approx", {"value": 10, "abs": 1}, 0.0, 20.0, None),
        ("eq", {"value": 1}, 1.0, 1.0, True),
        ("eq", {"value": 1}, 0.0, 0.5, False),
        ("eq", {"value": 1}, 0.0, 2.0, None),
    ],
)
def test_a_comparison_decided_on_a_range(
    op: str, operands: dict, low: float, high: float, decided: bool | None
) -> None:
    reading = Reading(metric="stop_epoch", op=op, **operands)
    assert reading.decided_on(low, high, {"d_model": 1.0, "n_layers": 1.0, "n_prompts": 1.0}) is decided


def test_a_claim_every_allowed_value_meets_is_no_evidence(tiny_run: Path) -> None:
    """float32 activations are never exactly 0: the fraction not 0 is 1 whatever the model does."""
    run = RunData(tiny_run)
    result = evaluate(claim(metric="nonzero_fraction", op="gt", value=0.5), run, control_of(run))
    assert (result.verdict, result.why) == ("no evidence", "the design fixes it either way")
    assert not result.finding
    assert result.design is not None and result.design.startswith("the design allows only 1:")


def test_a_claim_no_allowed_value_meets_is_refuted_and_counts(tiny_run: Path) -> None:
    """The design makes 'about 90% not 0' impossible to meet: not replicated, a finding, and why."""
    run = RunData(tiny_run)
    result = evaluate(claim(metric="nonzero_fraction", op="approx", value=0.9, abs=0.05), run, control_of(run))
    assert (result.verdict, result.why) == ("not replicated", "the write-up's design makes it unreachable")
    assert result.finding
    assert result.design is not None and result.design.startswith("the design allows only 1:")
    # A threshold the data can fall on either side of is judged by the comparison alone.
    either = evaluate(claim(metric="above_001_fraction", op="gt", value=0.5), run)
    assert either.why is None and either.design is None and either.finding


def test_a_bound_given_the_steps_taken_says_so(tiny_run: Path) -> None:
    """The codes on per sample that the Adam steps early stopping allowed can reach: a claim outside
    that range is not replicated given those steps, never fixed by design."""
    run = RunData(tiny_run)
    reach = METRICS["sample_code_l0"].reach
    bounds = reach(run) if reach is not None else None
    assert bounds is not None and bounds.given
    result = evaluate(claim(metric="sample_code_l0", op="gt", value=bounds.high), run, control_of(run))
    assert (result.verdict, result.why) == ("not replicated", "unreachable given the Adam steps early stopping allowed")
    assert result.finding
    met = evaluate(claim(metric="sample_code_l0", op="le", value=bounds.high), run, control_of(run))
    assert (met.verdict, met.why) == ("no evidence", "met either way given the Adam steps early stopping allowed")
    assert not met.finding


def test_a_claim_of_another_profile_or_without_a_value_is_no_evidence(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunData(tiny_run)
    elsewhere = evaluate(claim(profiles=("seed", "smollm2")), run)
    assert (elsewhere.verdict, elsewhere.why) == ("no evidence", "this model cannot test it")
    spec = METRICS["stop_epoch"]
    monkeypatch.setitem(METRICS, "stop_epoch", dataclasses.replace(spec, compute=lambda run: None))
    empty = evaluate(claim(), run)
    assert (empty.verdict, empty.why, empty.measured) == ("no evidence", "it has no value here", None)


def test_a_failed_test_that_could_not_flag_the_writeups_example_is_no_evidence(tmp_path: Path) -> None:
    # topic_run (helpers) with 5 testing prompts: the test flags 4 of 5 or more, the write-up's
    # testing example holds 1 of 5 (test_a_test_blind_to_the_writeups_own_example), and the run's
    # best top 5 holds 3: p = 0.0726 >= 0.05, failed, and blind to the write-up's example.
    topic_run(tmp_path, "testing")
    run = fake_run(tmp_path, config=load_profile("tiny"), info={"d_model": 4, "n_layers": 2})  # the same run, judged
    result = evaluate(claim(kind="reading", metric="topic_max_pvalue_testing", op="lt", value=0.05), run)
    assert result.holds is False
    assert (result.verdict, result.why) == (
        "no evidence",
        "the test cannot detect an effect the size of the write-up's",
    )


def test_the_relu_decoder_floor_by_hand() -> None:
    # x = [[-1, 2], [1, -2]]: mean 0 per column, sum (x - mean)^2 = 10; the best non-negative
    # reconstruction max(x, 0) leaves min(x, 0) = -1, -2: 5. Floor 5 / 10.
    x = np.array([[-1.0, 2.0], [1.0, -2.0]])
    assert health.relu_fvu_floor(x) == pytest.approx(0.5)
    assert health.relu_fvu_floor(np.array([[1.0, 2.0], [3.0, 5.0]])) == 0.0  # nothing negative: no floor


def test_a_poisson_tail_far_below_the_smallest_double_is_not_an_underflow() -> None:
    # P(X >= k), X ~ Poisson(2): the first term dominates, pmf(k) = e^-2 2^k / k!, and the rest is a
    # geometric series of ratio <= 2 / (k + 1): ln P = -2 + k ln 2 - ln k! + ln(1 / (1 - 2/(k + 1))).
    def by_hand(k: int) -> float:
        return -2 + k * math.log(2) - math.lgamma(k + 1) - math.log(1 - 2 / (k + 1))

    assert by_hand(150) / math.log(10) < -200  # far below 1e-200, still above the floor: computed, not floored
    assert stats.poisson_tail(150, 2.0) == pytest.approx(math.exp(by_hand(150)), rel=1e-5)
    assert by_hand(400) / math.log(10) < -600  # far below 1e-308, where sf gives 0
    assert stats.poisson_tail(400, 2.0) == stats.P_FLOOR
    assert stats.format_p(stats.poisson_tail(400, 2.0)) == "< 1e-300"
    # A tail that is a normal double: the same as the closed form 1 - e^-2 (1 + 2) for P(X >= 2).
    assert stats.poisson_tail(2, 2.0) == pytest.approx(1 - math.exp(-2) * 3, rel=1e-12)
    assert stats.poisson_tail(0, 2.0) == 1.0


def test_a_stratified_shuffle_moves_each_label_within_its_stratum() -> None:
    labels = np.arange(10)
    strata = ["a"] * 4 + ["b"] * 6
    null = stats.permutation_null(lambda shuffled: shuffled[..., :4].sum(axis=-1), labels, 300, 0, strata)
    assert set(null) == {0 + 1 + 2 + 3}  # the first four positions only ever hold labels 0-3
    plain = stats.permutation_null(lambda shuffled: shuffled[..., :4].sum(axis=-1), labels, 300, 0)
    assert len(set(plain)) > 5


def test_one_adam_step_keeps_a_row_near_its_initialisation_by_hand() -> None:
    # U(+-1/sqrt(f)) has variance 1 / (3 f): an encoder row of 4096 weights, f = 4096, squared norm 1/3;
    # a step of +-0.001 on each weight, squared norm 4096e-6. cos >= sqrt(1 - 4096e-6 * 3).
    assert implied.adam_first_step_cosine("encoder").value == pytest.approx(math.sqrt(1 - 3 * 4096e-6), rel=1e-12)
    assert implied.adam_first_step_cosine("encoder").value == pytest.approx(0.99384, abs=1e-5)
    # A decoder column: 4096 weights of U(+-1/sqrt(8192)), squared norm 1/6: cos >= sqrt(1 - 6 * 4096e-6).
    assert implied.adam_first_step_cosine("decoder").value == pytest.approx(0.98764, abs=1e-5)


def test_one_adam_step_moves_every_weight_by_lr() -> None:
    # The bound's premise, on PyTorch's own Adam: the first step is +-lr wherever the gradient is not 0.
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    start = layer.weight.detach().clone()
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-3)
    layer(torch.randn(8, 64)).pow(2).sum().backward()
    optimiser.step()
    assert torch.allclose((layer.weight - start).abs(), torch.full_like(start, 1e-3), atol=1e-7)


def test_the_writeups_chance_figures_by_hand() -> None:
    # JavaScript/web: 15 of 98 prompts; the write-up's example holds 4 of 5.
    one = (comb(15, 4) * 83 + comb(15, 5)) / comb(98, 5)
    assert one == pytest.approx(0.0017125, rel=1e-4)
    assert implied.chance_of_writeup_evidence("javascript_web").value == pytest.approx(1 - (1 - one) ** 50)
    assert implied.chance_of_writeup_evidence("javascript_web").value == pytest.approx(0.0821, abs=1e-4)
    # OOP: 13 prompts, 4 of 5. Testing: 3 prompts, the example holds 1 of 5.
    oop = (comb(13, 4) * 85 + comb(13, 5)) / comb(98, 5)
    assert implied.chance_of_writeup_evidence("oop").value == pytest.approx(1 - (1 - oop) ** 50)
    testing = 1 - comb(95, 5) / comb(98, 5)
    assert implied.chance_of_writeup_evidence("testing").value == pytest.approx(1 - (1 - testing) ** 50)


def test_distance_from_initialisation_by_hand(tiny_run: Path) -> None:
    """The run's SAE against the control's, read from the safetensors files and compared with torch's
    cosine; the largest change at most steps x lr (Adam: about lr per step)."""
    run = RunData(tiny_run)
    trained = artifacts.load_tensors(tiny_run / layout.SAE)
    initial = artifacts.load_tensors(tiny_run / layout.CONTROL / layout.SAE)
    encoder = torch.nn.functional.cosine_similarity(trained["encoder.weight"], initial["encoder.weight"], dim=1)
    decoder = torch.nn.functional.cosine_similarity(trained["decoder.weight"], initial["decoder.weight"], dim=0)
    # (torch's median is the lower middle value; the metric's is numpy's, the mean of the two)
    assert METRICS["encoder_init_cosine"].compute(run) == pytest.approx(float(np.median(encoder.numpy())), abs=1e-5)
    assert METRICS["decoder_init_cosine"].compute(run) == pytest.approx(float(np.median(decoder.numpy())), abs=1e-5)
    change = max(float((trained[k] - initial[k]).abs().max()) for k in trained)
    assert METRICS["max_weight_change"].compute(run) == pytest.approx(change)
    steps = METRICS["adam_steps"].compute(run)
    assert steps == run.train_summary["best_epoch"]  # full batch: one step an epoch
    assert 0 < change <= 3.2 * steps * run.config.train.lr  # Adam's step is at most about 3.2 lr
    control = control_of(run)
    assert control is not None and METRICS["encoder_init_cosine"].compute(control) == pytest.approx(1.0)


def test_epoch_1_sparsity_splits_into_real_and_padding_rows(tiny_run: Path) -> None:
    """Weighted by their rows, the two parts give the sparsity the first epoch recorded."""
    run = RunData(tiny_run)
    real, padding = (
        METRICS["sparsity_epoch1_real_rows"].compute(run),
        METRICS["sparsity_epoch1_padding_rows"].compute(run),
    )
    n_real, rows = len(run.split[0]), run.train_summary["train_rows"]
    combined = (real * n_real + (padding or 0.0) * (rows - n_real)) / rows
    assert combined == pytest.approx(run.history[0]["sparsity"], abs=1e-6)


def test_the_counts_follow_the_verdicts(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    results = evaluate_all(load_claims(), run)
    tally = findings.opening(results, run)[-1]
    counted = [r for r in results if r.claim.kind in ("measured", "reading")]
    found = sum(r.verdict in ("replicated", "not replicated") for r in counted)
    assert tally.startswith(f"**Counts:** of {len(counted)} measured and reading claims, {found} are findings")
    implied = [r for r in results if r.claim.kind == "implied"]
    follows = sum(r.verdict == "follows" for r in implied)
    assert tally.endswith(
        f"Implied: {follows} of the write-up's {len(implied)} conclusions follow from its own numbers."
    )


@pytest.mark.parametrize(("topic", "blind"), [("javascript_web", False), ("oop", False), ("testing", True)])
def test_a_test_blind_to_the_writeups_own_example(tmp_path: Path, topic: str, blind: bool) -> None:
    # topic_run (helpers): the test flags 4 of 5 or more. The write-up's JavaScript and OOP
    # examples hold 4 of 5 (p = 76 / 15504 here), its testing example 1 of 5 (p = 0.806): only the
    # testing test could not have flagged the write-up's own example.
    check = METRICS[f"topic_max_pvalue_{topic}"].blind
    assert check is not None and check(topic_run(tmp_path, topic)) is blind


def test_adams_step_bound_by_hand() -> None:
    # Step 1: m_hat = g, v_hat = g^2: exactly lr. Step 2: sum a_i^2 / b_i = 0.09^2 / 0.000999 + 0.1^2 / 0.001
    # = 18.1081, times (1 - 0.999^2) = 0.001999, square root 0.19026, over 1 - 0.9^2 = 0.19: 1.00137.
    assert initial.adam_step_bound(1) == pytest.approx(1.0, abs=1e-12)
    assert initial.adam_step_bound(2) == pytest.approx(math.sqrt(18.108108 * 0.001999) / 0.19, rel=1e-5)
    # PyTorch's Adam, fed the gradients that push one weight hardest (the same sign, shrinking fast), stays within it.
    weight = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.Adam([weight], lr=1.0)
    moved = []
    for step, grad in enumerate((1.0, 1e-3, 1e-6), start=1):
        before = weight.item()
        weight.grad = torch.tensor([-grad])
        optimiser.step()
        moved.append(weight.item() - before)
        assert moved[-1] <= initial.adam_step_bound(step) + 1e-6


def test_the_turn_bound_holds_on_a_trained_sae(tiny_run: Path) -> None:
    """The reach of the encoder rows' median cosine after the steps taken: the trained SAE is inside it."""
    run = RunData(tiny_run)
    reach = METRICS["encoder_init_cosine"].reach
    bounds = reach(run) if reach is not None else None
    measured = METRICS["encoder_init_cosine"].compute(run)
    if bounds is None:  # too many steps for the bound to say anything: nothing to check
        assert METRICS["adam_steps"].compute(run) > 0
    else:
        assert bounds.low <= measured <= bounds.high


def test_the_whitebox_count_is_judged_against_its_chance_rate_by_hand(tmp_path: Path) -> None:
    # whitebox_run (helpers): 4 live dimensions, each putting the white-box prompt first
    # with chance 0.15. P(X >= 2) = 0.10951875 >= 0.05, so the write-up's own 2 dimensions would not
    # be flagged here; P(X >= 3) = 4 * 0.15^3 * 0.85 + 0.15^4 = 0.01198125 < 0.05: 3 or more would be.
    run = whitebox_run(tmp_path)
    count = METRICS["whitebox_top_dims"]
    assert count.blind is not None and count.blind(run) is True
    assert count.flags is not None
    assert count.flags(run) == (
        "by the chance rate of its sample type, 3 or more dimensions would be flagged; "
        "the write-up's own 2 get p = 0.11 here"
    )


def test_the_codes_the_steps_taken_leave_on_by_hand(tmp_path: Path) -> None:
    # One Adam step (best epoch 1, full batch) moves each weight and bias by at most lr = 0.1. Encoder
    # rows (1, 0), (0, 1), (-1, 0), biases 0, 0, 0.5. Sample x = (1, -0.5): pre-activations 1, -0.5,
    # -0.5, each movable by 0.1 x (|x|_1 + 1) = 0.25: one code is on whatever the step did, and no
    # more can be. Sample x = (0.1, 0.5): pre-activations 0.1, 0.5, 0.4, movable by 0.16 (the bias
    # counts: 0.06 without it): two are surely on, the first may go either way. Mean per sample:
    # between 1.5 and 2.
    sae = SparseAutoencoder(2, 3)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        sae.encoder.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    tiny = load_profile("tiny")
    config = tiny.replace(train=tiny.train.replace(lr=0.1))
    samples = [torch.tensor([[[1.0, -0.5]]]), torch.tensor([[[0.1, 0.5]]])]
    fake_run(tmp_path / layout.CONTROL, sae=sae, codes=np.zeros((2, 3), dtype=np.float32))
    artifacts.write_json(tmp_path / layout.TRAIN_SUMMARY, {"best_epoch": 1, "train_rows": 1})
    run = fake_run(tmp_path, config=config, activations=samples, sae=sae)
    reach = METRICS["sample_code_l0"].reach
    bounds = reach(run) if reach is not None else None
    assert bounds is not None and (bounds.low, bounds.high) == pytest.approx((1.5, 2.0))
    assert bounds.reason.startswith("given the 1 Adam steps early stopping took (the best epoch), each encoder")
    assert "weight and bias moved by at most 1.000 lr" in bounds.reason


def test_the_codes_left_on_hold_on_a_trained_sae(tiny_run: Path) -> None:
    """The reach of the mean L0 after the steps taken: the trained SAE is inside it."""
    run = RunData(tiny_run)
    reach = METRICS["sample_code_l0"].reach
    bounds = reach(run) if reach is not None else None
    assert bounds is not None
    assert bounds.low <= METRICS["sample_code_l0"].compute(run) <= bounds.high


def test_the_lengths_max_length_allows_by_hand(tmp_path: Path) -> None:
    # max_length=50 counts the prompt. Prompts of 10 and 20 tokens get between 1 and 40 or 30 new
    # tokens: a mean of 1 to 35 new tokens, and of 16 to 50 tokens in all. The write-up's "about 50
    # new tokens" (45 to 55) is out of reach whatever the model says; 50 in all is not.
    records = [{"prompt_tokens": 10}, {"prompt_tokens": 20}]
    run = fake_run(tmp_path, config=load_profile("tiny"), records=records)
    new, total = METRICS["mean_new_tokens"].reach, METRICS["mean_total_tokens"].reach
    assert new is not None and total is not None
    assert (new(run).low, new(run).high) == (1.0, 35.0)  # type: ignore[union-attr]
    assert (total(run).low, total(run).high) == (16.0, 50.0)  # type: ignore[union-attr]
    about_50 = claim(metric="mean_new_tokens", op="approx", value=50, rel=0.1)
    assert about_50.decided_on(1.0, 35.0, {}) is False


def test_the_training_curve_is_judged_against_training_on_shuffled_activations(tiny_run: Path) -> None:
    """The untrained SAE takes no step, so a claim on the curve is compared with the same training on
    shuffled activations (shuffled/): met by both is no evidence, by the run only replicated, by the
    shuffled training only no evidence. A claim on the codes keeps the untrained SAE."""
    run = RunData(tiny_run)
    last = [json.loads((tiny_run / d / "train/history.json").read_text())[-1]["train_loss"] for d in ("", "shuffled")]
    assert last[0] != last[1]
    low, high = sorted(last)
    met_by_both = evaluate(claim(metric="final_train_loss", op="lt", value=high * 2), run, control_of(run))
    assert (met_by_both.verdict, met_by_both.why) == (
        "no evidence",
        "the same training on shuffled activations does the same",
    )
    assert met_by_both.control.of == "shuffled" and met_by_both.control.measured == last[1]
    middle = (low + high) / 2
    run_only, shuffled_only = ("lt", "gt") if last[0] < last[1] else ("gt", "lt")
    assert evaluate(claim(metric="final_train_loss", op=run_only, value=middle), run, control_of(run)).verdict == (
        "replicated"
    )
    control_only = evaluate(claim(metric="final_train_loss", op=shuffled_only, value=middle), run, control_of(run))
    assert (control_only.verdict, control_only.why) == (
        "no evidence",
        "only the training on shuffled activations meets it, so no result could support it",
    )
    on_codes = evaluate(claim(metric="sample_code_zero_fraction", op="ge", value=0.0), run, control_of(run))
    assert on_codes.control.of == "untrained"
    assert (on_codes.verdict, on_codes.why) == ("no evidence", "the untrained SAE does the same")
