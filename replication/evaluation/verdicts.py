"""Verdicts: each claim evaluated on a run, beside the untrained control and its other readings.

A verdict is computed, never written: replicated / not replicated / not testable at this profile /
inconclusive. Every measured or reading claim about the SAE is also evaluated on the control -- the
same SAE at its initialisation, no optimiser step, through the same analysis (``<run>/control/``) --
and a claim the control meets too "holds untrained": it is no support for the write-up's account
of what training found. Claims about the captured activations come before any SAE and have no
control value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from replication.evaluation.claims import Claim, Reading, format_value
from replication.evaluation.metrics import METRICS
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, Untestable

Verdict = Literal[
    "replicated", "not replicated", "not testable at this profile", "not testable with this corpus", "inconclusive"
]
VERDICTS: tuple[Verdict, ...] = (
    "replicated",
    "not replicated",
    "not testable at this profile",
    "not testable with this corpus",
    "inconclusive",
)
COUNTED = ("measured", "reading")
"""The kinds the headline counts: findings that could have come out otherwise."""


@dataclass(frozen=True)
class Outcome:
    """One reading evaluated on one run."""

    verdict: Verdict
    claimed: str
    measured: Any


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

    @property
    def holds_untrained(self) -> bool:
        return self.verdict == "replicated" and self.control is not None and self.control.verdict == "replicated"

    @property
    def reading_dependent(self) -> bool:
        """True when an alternative reading of the sentence would give another verdict."""
        decided = ("replicated", "not replicated")
        return self.verdict in decided and any(
            a.verdict in decided and a.verdict != self.verdict for a in self.alternatives
        )

    def line(self) -> str:
        text = f"{self.claim.id}  {self.verdict}  claimed {self.claimed}  measured {format_value(self.measured)}"
        if self.control is not None:
            text += f"  untrained {format_value(self.control.measured)}"
        return text + ("  (holds untrained)" if self.holds_untrained else "")


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


def outcome(reading: Reading, run: RunData) -> Outcome:
    scale = _scale(run)
    claimed = reading.expected(scale)
    measured = METRICS[reading.metric].compute(run)
    if isinstance(measured, Untestable):
        return Outcome("not testable with this corpus", claimed, str(measured))
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return Outcome("inconclusive", claimed, measured)
    return Outcome("replicated" if reading.holds(measured, scale) else "not replicated", claimed, measured)


def has_control(claim: Claim) -> bool:
    """Measured and reading claims whose evidence comes after the capture (the SAE's files)."""
    return claim.kind in COUNTED and METRICS[claim.metric].evidence not in layout.CAPTURE_FILES


def evaluate(claim: Claim, run: RunData, control: RunData | None = None) -> Result:
    """The claim's verdict on the run (with its control and alternatives), and its evidence file."""
    evidence = METRICS[claim.metric].evidence
    if not testable(claim, run):
        return Result(claim, "not testable at this profile", claim.expected(_scale(run)), None, evidence)
    main = outcome(claim, run)
    untrained = outcome(claim, control) if control is not None and has_control(claim) else None
    alternatives = tuple(outcome(reading, run) for reading in claim.alternatives)
    return Result(claim, main.verdict, main.claimed, main.measured, evidence, untrained, alternatives)


def control_of(run: RunData) -> RunData | None:
    """The run's untrained control, when its control stage ran; one view per run, so what its
    metrics derive (the permutation tests) is computed once for the verdicts and the report."""

    def view() -> RunData | None:
        control = RunData(run.root, overlay=layout.CONTROL)
        return control if control.path(layout.CODES).is_file() else None

    return run.memo("control", view)


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
            "holds_untrained": r.holds_untrained,
            "alternatives": [
                {"verdict": a.verdict, "claimed": a.claimed, "measured": a.measured} for a in r.alternatives
            ],
            "reading_dependent": r.reading_dependent,
        }
        for r in results
    ]
    artifacts.write_json(path, rows)
    return path
