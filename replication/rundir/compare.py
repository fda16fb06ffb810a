"""Does a run reproduce a reference run (the committed one)? Byte for byte where the CPU kernels are the
reference's: the same family (the manifest records torch's CPU capability: AVX2, AVX512, ...) on the
same number of torch threads, which split a float32 sum in their own way. Other kernels may round
float32 sums differently, so there the texts and tokens must still be identical, the numbers equal
within a stated tolerance, and every claim's verdict unchanged."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replication.rundir import artifacts, bands, layout
from replication.rundir.reader import RunData

Verdicts = Callable[[RunData], dict[str, str]]
"""Each claim's verdict on a run, by its id (``verdicts.verdicts_of``): the judging is the caller's."""

RTOL, ATOL = 1e-4, 1e-4
"""One pass's float32 rounding: the stages' numbers moved by at most 4e-6 relative between AVX2 and
AVX-512 kernels. Numbers that training amplifies further get a measured band (``bands.py``)."""
EXACT = (layout.SAMPLES, layout.PROMPTS)
"""Texts and token ids: identical on any CPU, or the capture itself differs."""
SHOWN = 5
"""Differences named in the one-line summary."""


@dataclass
class Comparison:
    same_kernels: bool
    kernels: tuple[str | None, str | None]
    """The run's and the reference's CPU capability and torch threads, e.g. "AVX2, 2 threads"."""
    differing: list[str] = field(default_factory=list)
    """Files whose bytes differ."""
    unexplained: list[str] = field(default_factory=list)
    """Differences that the kernel family does not explain, each named."""
    verdicts_changed: list[str] = field(default_factory=list)
    banded: list[str] = field(default_factory=list)
    """Numbers beyond one pass's rounding and within their measured band, each with its band."""
    cards: str | None = None
    """Other features the cards drew on other kernels, from numbers that differ within tolerance."""

    @property
    def reproduced(self) -> bool:
        return not self.unexplained and not self.verdicts_changed

    def line(self) -> str:
        if not self.reproduced:
            named = self.unexplained + [f"verdict of {c}" for c in self.verdicts_changed]
            return f"NOT reproduced: {len(named)} difference(s): {'; '.join(named[:SHOWN])}"
        if not self.differing:
            return f"reproduced byte for byte (CPU kernels {self.kernels[1]}); every verdict unchanged"
        banded = ""
        if self.banded:
            banded = f"; {len(self.banded)} number(s) within their measured bands: {'; '.join(self.banded[:SHOWN])}"
        cards = f"; {self.cards}" if self.cards else ""
        return (
            f"reproduced within rtol {RTOL:g}, atol {ATOL:g} on CPU kernels {self.kernels[0]} (reference: "
            f"{self.kernels[1]}); {len(self.differing)} file(s) differ in float rounding only{banded}{cards}; "
            "every verdict unchanged"
        )


def _kernels(run_dir: Path, stages: tuple[str, ...] = layout.STAGES) -> dict[str, str]:
    """Each of ``stages``'s CPU capability and torch threads as the manifest records them, e.g.
    "AVX2, 2 threads"."""
    recorded = artifacts.read_manifest(run_dir).get("stages", {})
    kernels = {}
    for stage in stages:
        environment = recorded.get(stage, {}).get("environment", {})
        capability, threads = environment.get("cpu_capability"), environment.get("torch_threads")
        if capability is not None:
            kernels[stage] = f"{capability}, {threads} thread{'' if threads == 1 else 's'}"
    return kernels


def _named(kernels: dict[str, str]) -> str | None:
    """The kernels of a run's stages, each family named once in stage order."""
    return "; ".join(dict.fromkeys(kernels.values())) or None


@dataclass
class _Tolerance:
    bands: dict[str, float] = field(default_factory=dict)
    """Measured bands by the number's path; the rest are held to one pass's rounding."""
    banded: list[str] = field(default_factory=list)

    def differences(self, ours: Any, ref: Any, where: str) -> list[str]:
        """Where two JSON values differ beyond their tolerance (numbers) or at all (anything else)."""
        if isinstance(ref, bool) or not isinstance(ref, int | float) or isinstance(ours, bool):
            if isinstance(ref, dict) and isinstance(ours, dict):
                if ours.keys() != ref.keys():
                    return [f"{where}: other keys"]
                return [d for key in ref for d in self.differences(ours[key], ref[key], f"{where}.{key}")]
            if isinstance(ref, list) and isinstance(ours, list):
                if len(ours) != len(ref):
                    return [f"{where}: length {len(ours)} vs {len(ref)}"]
                pairs = enumerate(zip(ours, ref, strict=True))
                return [d for i, (o, r) in pairs for d in self.differences(o, r, f"{where}[{i}]")]
            return [] if ours == ref else [f"{where}: {str(ours)[:40]!r} vs {str(ref)[:40]!r}"]
        if not isinstance(ours, int | float):
            return [f"{where}: {ours!r} vs {ref}"]
        if math.isclose(ours, ref, rel_tol=RTOL, abs_tol=ATOL):
            return []
        band = self.bands.get(where)
        if band is None:
            return [f"{where}: {ours} vs {ref} (tolerance: rtol {RTOL:g}, atol {ATOL:g}; no measured band)"]
        named = f"{where}: {ours:.6g} vs {ref:.6g} (band \u00b1{band:.3g})"
        if abs(ours - ref) <= band:
            self.banded.append(named)
            return []
        return [named]


def _within_tolerance(name: str, ours: Path, ref: Path) -> list[str]:
    if name in EXACT or not name.endswith((".safetensors", ".json")):
        return [f"{name} differs"]
    if name.endswith(".json"):
        return _Tolerance().differences(json.loads(ours.read_text()), json.loads(ref.read_text()), name)
    mine, theirs = artifacts.load_tensors(ours), artifacts.load_tensors(ref)
    if mine.keys() != theirs.keys():
        return [f"{name}: other tensors"]
    return [
        f"{name}:{key} beyond tolerance"
        for key in theirs
        if mine[key].shape != theirs[key].shape
        or not np.allclose(mine[key].numpy(), theirs[key].numpy(), rtol=RTOL, atol=ATOL)
    ]


def compare_runs(run_dir: Path, reference: Path, verdicts_of: Verdicts) -> Comparison:
    """The pipeline's files of ``run_dir`` against ``reference``'s, then every claim's verdict."""
    result = Comparison(
        same_kernels=_kernels(run_dir) == _kernels(reference),
        kernels=(_named(_kernels(run_dir, KERNEL_STEPS)), _named(_kernels(reference, KERNEL_STEPS))),
    )
    files = artifacts.stage_outputs(reference)
    if artifacts.stage_outputs(run_dir) != files:
        result.unexplained.append("the stages wrote other files")
        return result
    ours, theirs = artifacts.read_manifest(run_dir)["files"], artifacts.read_manifest(reference)["files"]
    for name in files:  # by the sha256 each manifest records: a file left out of the reference has one too
        if ours[name] != theirs[name]:
            result.differing.append(name)
            if result.same_kernels:
                result.unexplained.append(f"{name} differs on the same CPU kernels")
            elif (reference / name).is_file():  # else the files computed from it are compared
                result.unexplained += _within_tolerance(name, run_dir / name, reference / name)
    if result.differing:  # the same files give the same verdicts: they are computed from them alone
        recomputed = verdicts_of(RunData(run_dir))
        committed = _verdicts(reference, verdicts_of)
        result.verdicts_changed = sorted(c for c in committed if recomputed.get(c) != committed[c])
    tolerance = _Tolerance(bands.read(reference))
    _replication_differences(run_dir, reference, tolerance, result)
    result.banded = tolerance.banded
    return result


REPLICATION_FILES = {layout.VERDICTS: "report", layout.SEEDS_JSON: "seeds", layout.ABLATIONS_JSON: "ablations"}
"""What the whole replication derives beyond the stages, with the step that writes it: compared where
both runs have it, exactly on the same kernels, else each number within its tolerance or band."""
KERNEL_STEPS = (*layout.STAGES, *REPLICATION_FILES.values())


def _replication_differences(run_dir: Path, reference: Path, tolerance: _Tolerance, result: Comparison) -> None:
    """The verdicts, seeds, ablations and the features the cards drew, where both runs have them. The
    cards are drawn from numbers compared here: where those differ within their tolerance on other
    kernels, other features drawn are named beside the comparison; anywhere else they are a difference."""
    ours, theirs = artifacts.read_manifest(run_dir)["files"], artifacts.read_manifest(reference)["files"]
    for name, step in REPLICATION_FILES.items():
        if name not in ours or name not in theirs or ours[name] == theirs[name]:
            continue
        result.differing.append(name)
        steps = (*layout.STAGES, step)
        if _kernels(run_dir, steps) == _kernels(reference, steps):
            result.unexplained.append(f"{name} differs on the same CPU kernels")
        else:
            mine, reference_data = (json.loads((d / name).read_text()) for d in (run_dir, reference))
            result.unexplained += tolerance.differences(mine, reference_data, name)
    drawn = [{n for n in files if n.startswith(f"{layout.CARDS}/")} for files in (ours, theirs)]
    if drawn[0] and drawn[1] and drawn[0] != drawn[1]:
        extra, missing = (
            ", ".join(sorted(a - b)[:4]) or "none" for a, b in ((drawn[0], drawn[1]), (drawn[1], drawn[0]))
        )
        named = f"the cards drew other features: {extra} instead of {missing}"
        other_kernels = _kernels(run_dir, KERNEL_STEPS) != _kernels(reference, KERNEL_STEPS)
        if result.differing and not result.unexplained and other_kernels:
            result.cards = named  # drawn from numbers that differ within their tolerance
        else:
            result.unexplained.append(named)


def _verdicts(run_dir: Path, verdicts_of: Verdicts) -> dict[str, str]:
    """The run's recorded verdicts (verdicts.json, checked against the manifest), else computed."""
    run = RunData(run_dir)
    if run.has(layout.VERDICTS):
        return {row["id"]: row["verdict"] for row in run.json(layout.VERDICTS)}
    return verdicts_of(run)
