"""Verdicts: each claim evaluated on a run, beside the untrained control and its other readings.

A verdict is computed, never written, in the words of the claim's kind:
- setup: *conforms* / *differs* (the run used the stated configuration; not a finding);
- implied: *consistent* / *inconsistent* with the write-up's reading (its own numbers, no run);
- measured and reading: *replicated* / *not replicated*, or
  - *fixed by design*: every value the design allows (a fraction that the data type fixes:
    ``Metric.reach``) meets the claim, so meeting it is no evidence. Where no value the design allows
    meets it (a floor the architecture imposes), the claim is *not replicated*, and counts: the
    write-up's own design refutes it, and the verdict says why;
  - *holds untrained*: the same SAE at its initialisation -- no optimiser step, the same analysis
    (``<run>/control/``) -- meets the claim too, so it is no support for what training found.
  - *within chance*: the reading failed, but its test could not have flagged an effect as large as
    the write-up's own example (the smallest effect it flags is stated): no evidence of absence.
  None of the three is counted among findings. Claims about the captured activations come before any
  SAE and have no control value.
- *not testable*: the test could not have flagged any outcome, or no outcome could have supported the
  claim (the untrained SAE meets it, and the trained one does not); *not testable at this profile*: the
  claim is bound to another scale (its value is still measured and shown); *inconclusive*: no value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from replication.evaluation.claims import Claim, Reading, format_value
from replication.evaluation.metrics import METRICS
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, Untestable, control_of

Verdict = Literal[
    "conforms",
    "differs",
    "consistent",
    "inconsistent",
    "replicated",
    "not replicated",
    "fixed by design",
    "holds untrained",
    "within chance",
    "not testable",
    "not testable at this profile",
    "inconclusive",
]
WORDS: dict[str, tuple[Verdict, Verdict]] = {
    "setup": ("conforms", "differs"),
    "implied": ("consistent", "inconsistent"),
    "measured": ("replicated", "not replicated"),
    "reading": ("replicated", "not replicated"),
}
"""The verdict when a claim's comparison holds, and when it does not, by kind."""
COUNTED = ("measured", "reading")
"""The kinds whose verdicts can be findings: quantities of the run that could have come out otherwise."""
FINDINGS: tuple[Verdict, ...] = ("replicated", "not replicated", "inconclusive")
"""The verdicts counted as findings (a claim the design makes impossible to meet is not replicated);
fixed by design (impossible to miss), holds untrained and not testable are not."""
WHY: dict[str, str] = {
    "fixed by design": "the write-up's design fixes it either way",
    "holds untrained": "the untrained SAE does the same",
    "within chance": "the test cannot detect an effect the size of the write-up's own",
    "not testable": "no outcome could have supported it",
    "not testable at this profile": "it is bound to the 8B model's scale",
    "inconclusive": "it has no value here",
}
"""Why a verdict is no finding, in a few words."""
NOT_FINDINGS: tuple[Verdict, ...] = (
    "fixed by design",
    "holds untrained",
    "within chance",
    "not testable",
    "not testable at this profile",
)


@dataclass(frozen=True)
class Outcome:
    """One reading evaluated on one run: whether its comparison holds (None: no value, or the test
    could not flag any), and the verdict in its kind's words."""

    verdict: Verdict
    claimed: str
    measured: Any
    holds: bool | None = None


@dataclass(frozen=True)
class Result:
    """A claim's verdict on one run, its control's, and its alternative readings'."""

    claim: Claim
    verdict: Verdict
    claimed: str
    measured: Any
    evidence: str
    control: Outcome | None = None
    alternatives: tuple[Outcome, ...] = ()
    design: str | None = None
    """Why no reachable value could change the verdict (fixed by design), or the range the design
    allows when it could."""
    detail: str | None = None
    """What the value was computed from (``Metric.detail``)."""
    control_detail: str | None = None
    holds: bool | None = None
    """Whether the primary reading's comparison held on the run (None: no value, or not testable)."""

    @property
    def holds_untrained(self) -> bool:
        return self.verdict == "holds untrained"

    @property
    def finding(self) -> bool:
        return self.claim.kind in COUNTED and self.verdict in FINDINGS

    @property
    def reading_dependent(self) -> bool:
        """True when an alternative reading of the sentence, judged as the primary one is, would give
        another verdict."""
        return self.holds is not None and any(
            a.holds is not None and a.verdict != self.verdict for a in self.alternatives
        )

    def line(self) -> str:
        text = f"{self.claim.id}  {self.verdict}  claimed {self.claimed}  measured {format_value(self.measured)}"
        if self.control is not None:
            text += f"  untrained {format_value(self.control.measured)}"
        return text


def _scale(run: RunData) -> dict[str, float]:
    return {
        "d_model": float(run.info["d_model"]),
        "n_layers": float(run.info["n_layers"]),
        "n_prompts": float(len(run.records)),
    }


def testable(claim: Claim, run: RunData) -> bool:
    """At this profile -- and a model with random weights (tiny, or --random-init) tests only what
    holds for any weights: the claims the tiny profile tests."""
    random_weights = run.config.model.source == "random_init" and "tiny" not in claim.profiles
    return run.config.profile in claim.profiles and not random_weights


def outcome(reading: Reading, run: RunData, kind: str, p_factor: float = 1.0) -> Outcome:
    """The reading on the run, in the words of ``kind``; a p-value metric is first multiplied by
    ``p_factor`` (the number of seeds it is one of: Bonferroni), capped at 1."""
    scale = _scale(run)
    claimed = reading.expected(scale)
    measured = METRICS[reading.metric].compute(run)
    if isinstance(measured, Untestable):
        return Outcome("not testable", claimed, str(measured))
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        return Outcome("inconclusive", claimed, None if measured is None else str(measured))
    judged = min(1.0, measured * p_factor) if METRICS[reading.metric].pvalue else measured
    holds = reading.holds(judged, scale)
    return Outcome(WORDS[kind][0] if holds else WORDS[kind][1], claimed, measured, holds)


def has_control(claim: Claim, reading: Reading | None = None) -> bool:
    """Measured and reading claims whose evidence (the primary reading's, or ``reading``'s) is the
    SAE's: not the capture, which comes before any SAE, nor the training curve, which the untrained
    control, taking no step, does not have (a curve that cannot move decides nothing)."""
    evidence = METRICS[(reading or claim).metric].evidence
    return claim.kind in COUNTED and evidence not in layout.CAPTURE_FILES and evidence != layout.HISTORY


def _design(claim: Reading, run: RunData) -> tuple[str | None, bool]:
    """(text, fixed): what values the design allows for the reading's metric on this run, and whether
    its comparison is decided on all of them."""
    spec = METRICS[claim.metric]
    bounds = spec.reach(run) if spec.reach is not None else None
    if bounds is None:
        return (spec.flags(run) if spec.flags is not None else None), False
    decided = claim.decided_on(bounds.low, bounds.high, _scale(run))
    span = (
        f"{format_value(bounds.low)}"
        if bounds.low == bounds.high
        else (f"[{format_value(bounds.low)}, {format_value(bounds.high)}]")
    )
    if decided is None:
        return f"the design allows {span} ({bounds.reason}), so it could have come out either way", False
    return f"the design allows only {span}: {bounds.reason}", True


def _detail(metric: str, run: RunData | None) -> str | None:
    describe = METRICS[metric].detail
    return describe(run) if describe is not None and run is not None else None


def evaluate(claim: Claim, run: RunData, control: RunData | None = None, p_factor: float = 1.0) -> Result:
    """The claim's verdict on the run (with its control and alternatives), and its evidence file.
    A claim not testable at this profile is still measured, and its value shown."""
    evidence = METRICS[claim.metric].evidence
    main, untrained, design = _judged(claim, claim, run, control, p_factor)
    detail = _detail(claim.metric, run)
    control_detail = _detail(claim.metric, control) if untrained is not None else None
    alternatives = tuple(_judged(claim, reading, run, control, p_factor)[0] for reading in claim.alternatives)
    if not testable(claim, run):
        verdict: Verdict = "not testable at this profile"
        return Result(
            claim, verdict, main.claimed, main.measured, evidence, untrained, alternatives, None, detail, control_detail
        )
    return Result(
        claim,
        main.verdict,
        main.claimed,
        main.measured,
        evidence,
        untrained,
        alternatives,
        design,
        detail,
        control_detail,
        main.holds,
    )


def _judged(
    claim: Claim, reading: Reading, run: RunData, control: RunData | None, p_factor: float
) -> tuple[Outcome, Outcome | None, str | None]:
    """One reading of the claim on the run, judged as every reading is: its outcome with the verdict
    that the design's reach, the untrained control and the test's power leave it; the control's
    outcome; and what the design allows."""
    main = outcome(reading, run, claim.kind, p_factor)
    has = control is not None and has_control(claim, reading)
    untrained = outcome(reading, control, claim.kind, p_factor) if has and control is not None else None
    if claim.kind not in COUNTED or main.holds is None:
        return main, untrained, None
    verdict, (design, fixed) = main.verdict, _design(reading, run)
    blind = METRICS[reading.metric].blind
    if fixed:  # impossible to miss: no evidence; impossible to meet: refuted by the design itself
        verdict = "fixed by design" if main.holds else WORDS[claim.kind][1]
    elif main.holds and untrained is not None and untrained.holds:
        verdict = "holds untrained"
    elif untrained is not None and untrained.holds:
        verdict = "not testable"
        out_of_reach = (
            "no outcome could have supported the claim: the untrained SAE meets it, so a trained SAE meeting it "
            "would only hold untrained"
        )
        design = out_of_reach if design is None else f"{design}; {out_of_reach}"
    elif not main.holds and blind is not None and blind(run):
        verdict = "within chance"
    return dataclasses.replace(main, verdict=verdict), untrained, design


def evaluate_all(claims: list[Claim], run: RunData) -> list[Result]:
    control = control_of(run)
    return [evaluate(claim, run, control) for claim in claims]


def write_verdicts(run: RunData, results: list[Result]) -> Path:
    """``verdicts.json``: every claim's kind and verdict on the run, what was claimed and measured,
    the untrained control's value and verdict, and each alternative reading's."""
    path = run.root / layout.VERDICTS
    rows = [
        {
            "id": r.claim.id,
            "kind": r.claim.kind,
            "verdict": r.verdict,
            "claimed": r.claimed,
            "measured": r.measured,
            "evidence": r.evidence,
            "control": None if r.control is None else {"verdict": r.control.verdict, "measured": r.control.measured},
            "design": r.design,
            "detail": r.detail,
            "control_detail": r.control_detail,
            "alternatives": [
                {"verdict": a.verdict, "claimed": a.claimed, "measured": a.measured} for a in r.alternatives
            ],
            "reading_dependent": r.reading_dependent,
        }
        for r in results
    ]
    artifacts.write_json(path, rows)
    return path
