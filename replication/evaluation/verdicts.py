"""Verdicts: each claim judged on a run, beside its untrained control and its other readings.

The rules and the words are in docs/claims-and-verdicts.md; ``judge`` is the one place they live.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from replication.evaluation.claims import Claim, Reading, format_value
from replication.evaluation.metrics import METRICS
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, Untestable, control_of, shuffled_of

REPLICATED, NOT_REPLICATED, NO_EVIDENCE = "replicated", "not replicated", "no evidence"
WORDS = {
    "setup": ("conforms", "differs"),
    "implied": ("follows", "does not follow"),
    "measured": (REPLICATED, NOT_REPLICATED),
    "reading": (REPLICATED, NOT_REPLICATED),
}
"""A claim's verdict when its comparison holds, and when it does not, by kind."""
COUNTED = ("measured", "reading")
"""The kinds whose verdicts can be findings: quantities of the run that could have come out otherwise."""
FINDINGS = (REPLICATED, NOT_REPLICATED)
WHY = {
    "unreachable": "the write-up's design makes it unreachable",
    "unreachable given": "unreachable given the Adam steps early stopping allowed",
    "fixed": "the design fixes it either way",
    "fixed given": "met either way given the Adam steps early stopping allowed",
    "untrained": "the untrained SAE does the same",
    "untrained only": "only the untrained SAE meets it, so no result could support it",
    "shuffled": "the same training on shuffled activations does the same",
    "shuffled only": "only the training on shuffled activations meets it, so no result could support it",
    "no power": "the test cannot detect an effect the size of the write-up's",
    "8b": "it needs the 8B model",
    "profile": "this model cannot test it",
    "no value": "it has no value here",
    "seeds": "the seeds disagree",
}
"""Why a verdict is what it is, where the bare comparison does not say."""


@dataclass(frozen=True)
class Outcome:
    """One reading judged on one run; ``holds``: whether its comparison held (None: no value)."""

    verdict: str
    claimed: str
    measured: Any
    holds: bool | None = None
    why: str | None = None
    of: str | None = None
    """On a control: which one, ``untrained`` (the SAE at its start) or ``shuffled`` (training on shuffled data)."""


@dataclass(frozen=True, kw_only=True)
class Result(Outcome):
    """A claim's verdict on one run (its primary reading's outcome), its control's outcome, and its
    alternative readings'."""

    claim: Claim
    evidence: str
    control: Outcome | None = None
    alternatives: tuple[Outcome, ...] = ()
    design: str | None = None
    """What values the design allows, when the metric says."""
    detail: str | None = None
    control_detail: str | None = None

    @property
    def finding(self) -> bool:
        return self.claim.kind in COUNTED and self.verdict in FINDINGS

    @property
    def reading_dependent(self) -> bool:
        """Another reading of the sentence, judged as this one is, would give another verdict."""
        return self.holds is not None and any(
            a.holds is not None and a.verdict != self.verdict for a in self.alternatives
        )

    def line(self) -> str:
        text = f"{self.claim.id}  {self.verdict}  claimed {self.claimed}  measured {format_value(self.measured)}"
        if self.control is not None:
            text += f"  {self.control.of} {format_value(self.control.measured)}"
        return text + (f"  ({self.why})" if self.why else "")


def _scale(run: RunData) -> dict[str, float]:
    return {"d_model": run.info["d_model"], "n_layers": run.info["n_layers"], "n_prompts": len(run.records)}


def testable(claim: Claim, run: RunData) -> bool:
    """At this profile; a model with random weights tests only what the tiny profile tests."""
    random_weights = run.config.model.source == "random_init" and "tiny" not in claim.profiles
    return run.config.profile in claim.profiles and not random_weights


def compare(reading: Reading, run: RunData, kind: str, p_factor: float = 1.0) -> Outcome:
    """The reading's bare comparison on the run; a p-value is first multiplied by ``p_factor``
    (Bonferroni over the seeds it is one of)."""
    claimed = reading.expected(_scale(run))
    measured = METRICS[reading.metric].compute(run)
    if isinstance(measured, Untestable):
        return Outcome(NO_EVIDENCE, claimed, str(measured), why=WHY["no power"])
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        return Outcome(NO_EVIDENCE, claimed, None if measured is None else str(measured), why=WHY["no value"])
    judged = min(1.0, measured * p_factor) if METRICS[reading.metric].pvalue else measured
    holds = reading.holds(judged, _scale(run))
    return Outcome(WORDS[kind][0] if holds else WORDS[kind][1], claimed, measured, holds)


def control_for(claim: Claim, reading: Reading, run: RunData, untrained: RunData | None) -> tuple[str, RunData] | None:
    """What the reading's value is compared with, by name: the untrained SAE, for what the SAE does;
    for the training curve, the same training on shuffled activations (the untrained SAE takes no
    step); none for the capture, which comes before any SAE."""
    evidence = METRICS[reading.metric].evidence
    if claim.kind not in COUNTED or evidence in layout.CAPTURE_FILES:
        return None
    name, view = ("shuffled", shuffled_of(run)) if evidence == layout.HISTORY else ("untrained", untrained)
    return None if view is None else (name, view)


def _design(reading: Reading, run: RunData) -> tuple[str | None, bool | None, bool]:
    """What the design allows for the reading's metric on this run; whether the comparison holds on
    all of it (True), on none (False) or on some (None); and whether that is given the run's steps."""
    spec = METRICS[reading.metric]
    bounds = spec.reach(run) if spec.reach is not None else None
    if bounds is None:
        return (spec.flags(run) if spec.flags is not None else None), None, False
    decided = reading.decided_on(bounds.low, bounds.high, _scale(run))
    low, high = format_value(bounds.low), format_value(bounds.high)
    span = low if bounds.low == bounds.high else f"[{low}, {high}]"
    if decided is None:
        return f"the design allows {span} ({bounds.reason}), so it could have come out either way", None, False
    return f"the design allows only {span}: {bounds.reason}", decided, bounds.given


def judge(
    claim: Claim, reading: Reading, run: RunData, control: RunData | None, p_factor: float = 1.0
) -> tuple[Outcome, Outcome | None, str | None]:
    """The verdict of one reading of the claim on the run, its control's outcome, and what the design
    allows. A claim the design makes impossible to meet is not replicated; one it makes impossible to
    miss, or that the untrained SAE meets too, or that the test could not have flagged, is no evidence."""
    main = compare(reading, run, claim.kind, p_factor)
    picked = control_for(claim, reading, run, control)
    untrained = None if picked is None else replace(compare(reading, picked[1], claim.kind, p_factor), of=picked[0])
    if not testable(claim, run):
        why = WHY["8b" if claim.profiles == ("seed",) else "profile"]
        return replace(main, verdict=NO_EVIDENCE, why=why), untrained, None
    if claim.kind not in COUNTED or main.holds is None:
        return main, untrained, None
    design, decided, given = _design(reading, run)
    blind = METRICS[reading.metric].blind
    if decided is not None:
        key = ("fixed" if decided else "unreachable") + (" given" if given else "")
        verdict = NO_EVIDENCE if decided else NOT_REPLICATED
        return replace(main, verdict=verdict, why=WHY[key]), untrained, design
    if untrained is not None and untrained.holds:
        why = WHY[f"{untrained.of}{'' if main.holds else ' only'}"]
        return replace(main, verdict=NO_EVIDENCE, why=why), untrained, design
    if not main.holds and blind is not None and blind(run):
        return replace(main, verdict=NO_EVIDENCE, why=WHY["no power"]), untrained, design
    return main, untrained, design


def _detail(metric: str, run: RunData | None) -> str | None:
    describe = METRICS[metric].detail
    return describe(run) if describe is not None and run is not None else None


def evaluate(claim: Claim, run: RunData, control: RunData | None = None, p_factor: float = 1.0) -> Result:
    """The claim's verdict on the run, with its control, its alternatives and its evidence file."""
    main, untrained, design = judge(claim, claim, run, control, p_factor)
    alternatives = tuple(judge(claim, reading, run, control, p_factor)[0] for reading in claim.alternatives)
    untrained_sae = untrained is not None and untrained.of == "untrained"  # a curve's detail reads the run's rows
    return Result(
        **vars(main),
        claim=claim,
        evidence=METRICS[claim.metric].evidence,
        control=untrained,
        alternatives=alternatives,
        design=design,
        detail=_detail(claim.metric, run),
        control_detail=_detail(claim.metric, control) if untrained_sae else None,
    )


def evaluate_all(claims: list[Claim], run: RunData) -> list[Result]:
    control = control_of(run)
    return [evaluate(claim, run, control) for claim in claims]


def verdicts_of(claims: list[Claim]) -> Callable[[RunData], dict[str, str]]:
    """Each claim's verdict on a run, by its id: what ``rundir.compare`` holds two runs to."""
    return lambda run: {r.claim.id: r.verdict for r in evaluate_all(claims, run)}


def combine(outcomes: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    """One verdict and why over seeds (the faithful run's first). Replicated in some seed and not in
    another: the seeds disagree. Else not replicated if some seed failed it; else, where some seed's
    control does the same, that control's why (a control on the threshold cannot flip the verdict, and
    a seed whose test fired is not hidden by the others); else the verdict most seeds give, the first
    seed's on a tie."""
    words = {verdict for verdict, _ in outcomes}
    controlled = [o for o in outcomes if o in ((NO_EVIDENCE, WHY["untrained"]), (NO_EVIDENCE, WHY["shuffled"]))]
    if REPLICATED in words and NOT_REPLICATED in words:
        return NO_EVIDENCE, WHY["seeds"]
    if NOT_REPLICATED in words:
        return next(o for o in outcomes if o[0] == NOT_REPLICATED)
    if controlled:
        return controlled[0]
    counts = Counter(outcomes)
    return max(outcomes, key=lambda o: (counts[o], -outcomes.index(o)))


def write_verdicts(run: RunData, results: list[Result]) -> Path:
    """``verdicts.json``: every claim's verdict and why, what was claimed and measured, the control's
    value and verdict, and each alternative reading's."""
    rows = [
        {
            "id": r.claim.id,
            "kind": r.claim.kind,
            "verdict": r.verdict,
            "why": r.why,
            "claimed": r.claimed,
            "measured": r.measured,
            "evidence": r.evidence,
            "control": None
            if r.control is None
            else {"of": r.control.of, "verdict": r.control.verdict, "measured": r.control.measured},
            "design": r.design,
            "detail": r.detail,
            "control_detail": r.control_detail,
            "alternatives": [
                {"verdict": a.verdict, "why": a.why, "claimed": a.claimed, "measured": a.measured}
                for a in r.alternatives
            ],
            "reading_dependent": r.reading_dependent,
        }
        for r in results
    ]
    path = run.root / layout.VERDICTS
    artifacts.write_json(path, rows)
    return path
