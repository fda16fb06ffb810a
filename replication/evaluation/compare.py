"""Does a run reproduce a reference run (the committed one)? Byte for byte where the CPU kernels are the
reference's: the same family (the manifest records torch's CPU capability: AVX2, AVX512, ...) on the
same number of torch threads, which split a float32 sum in their own way. Other kernels may round
float32 sums differently, so there the texts and tokens must still be identical, the numbers equal
within a stated tolerance, and every claim's verdict unchanged."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replication.evaluation.claims import Claim
from replication.evaluation.verdicts import evaluate_all
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData

RTOL, ATOL = 1e-4, 1e-4
"""float32 sums in another order: relative error ~1e-6 per operation, amplified by training."""
EXACT = (layout.SAMPLES, layout.PROMPTS)
"""Texts and token ids: identical on any CPU, or the capture itself differs."""


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

    @property
    def reproduced(self) -> bool:
        return not self.unexplained and not self.verdicts_changed

    def line(self) -> str:
        if not self.reproduced:
            named = self.unexplained + [f"verdict of {c}" for c in self.verdicts_changed]
            return f"NOT reproduced: {len(named)} difference(s): {'; '.join(named[:5])}"
        if not self.differing:
            return f"reproduced byte for byte (CPU kernels {self.kernels[1]}); every verdict unchanged"
        return (
            f"reproduced within rtol {RTOL:g}, atol {ATOL:g} on CPU kernels {self.kernels[0]} (reference: "
            f"{self.kernels[1]}); {len(self.differing)} file(s) differ in float rounding only; every verdict unchanged"
        )


def _kernels(run_dir: Path) -> str | None:
    """The CPU capability and torch threads of the pipeline's stages as the manifest records them,
    e.g. "AVX2, 2 threads" (stages made on other kernels are each named, in stage order)."""
    stages = artifacts.read_manifest(run_dir).get("stages", {})
    seen: list[str] = []
    for stage in layout.STAGES:
        environment = stages.get(stage, {}).get("environment", {})
        capability, threads = environment.get("cpu_capability"), environment.get("torch_threads")
        if capability is None:
            continue
        kernels = f"{capability}, {threads} thread{'' if threads == 1 else 's'}"
        if kernels not in seen:
            seen.append(kernels)
    return "; ".join(seen) or None


def _close(ours: Any, ref: Any, where: str) -> list[str]:
    """Where two JSON values differ beyond the tolerance (numbers) or at all (anything else)."""
    if isinstance(ref, bool) or not isinstance(ref, int | float) or isinstance(ours, bool):
        if isinstance(ref, dict) and isinstance(ours, dict):
            if ours.keys() != ref.keys():
                return [f"{where}: other keys"]
            return [d for key in ref for d in _close(ours[key], ref[key], f"{where}.{key}")]
        if isinstance(ref, list) and isinstance(ours, list):
            if len(ours) != len(ref):
                return [f"{where}: length {len(ours)} vs {len(ref)}"]
            return [d for i, (o, r) in enumerate(zip(ours, ref, strict=True)) for d in _close(o, r, f"{where}[{i}]")]
        return [] if ours == ref else [f"{where}: {str(ours)[:40]!r} vs {str(ref)[:40]!r}"]
    if not isinstance(ours, int | float) or not math.isclose(ours, ref, rel_tol=RTOL, abs_tol=ATOL):
        return [f"{where}: {ours} vs {ref}"]
    return []


def _within_tolerance(name: str, ours: Path, ref: Path) -> list[str]:
    if name in EXACT or not name.endswith((".safetensors", ".json")):
        return [f"{name} differs"]
    if name.endswith(".json"):
        return _close(json.loads(ours.read_text()), json.loads(ref.read_text()), name)[:3]
    mine, theirs = artifacts.load_tensors(ours), artifacts.load_tensors(ref)
    if mine.keys() != theirs.keys():
        return [f"{name}: other tensors"]
    return [
        f"{name}:{key} beyond tolerance"
        for key in theirs
        if mine[key].shape != theirs[key].shape
        or not np.allclose(mine[key].numpy(), theirs[key].numpy(), rtol=RTOL, atol=ATOL)
    ]


def compare_runs(run_dir: Path, reference: Path, claims: list[Claim]) -> Comparison:
    """The pipeline's files of ``run_dir`` against ``reference``'s, then every claim's verdict."""
    ours, theirs = _kernels(run_dir), _kernels(reference)
    result = Comparison(same_kernels=ours == theirs, kernels=(ours, theirs))
    files = artifacts.stage_outputs(reference)
    if artifacts.stage_outputs(run_dir) != files:
        result.unexplained.append("the stages wrote other files")
        return result
    for name in files:
        if artifacts.sha256_file(run_dir / name) != artifacts.sha256_file(reference / name):
            result.differing.append(name)
            if result.same_kernels:
                result.unexplained.append(f"{name} differs on the same CPU kernels")
            else:
                result.unexplained += _within_tolerance(name, run_dir / name, reference / name)
    if result.differing:  # the same files give the same verdicts: they are computed from them alone
        recomputed = {r.claim.id: r.verdict for r in evaluate_all(claims, RunData(run_dir))}
        committed = _verdicts(reference, claims)
        result.verdicts_changed = sorted(c for c in committed if recomputed.get(c) != committed[c])
    result.unexplained += _replication_differences(run_dir, reference, result.same_kernels)
    return result


REPLICATION_FILES = (layout.VERDICTS, layout.SEEDS_JSON, layout.ABLATIONS_JSON)
"""What the whole replication derives beyond the stages, compared where both runs have it: every
verdict, measured value and seed or variant row within the tolerance (exactly on the same kernels)."""


def _replication_differences(run_dir: Path, reference: Path, same_kernels: bool) -> list[str]:
    """The verdicts, seeds, ablations and the features the cards drew, where both runs have them."""
    ours, theirs = artifacts.read_manifest(run_dir)["files"], artifacts.read_manifest(reference)["files"]
    named = []
    for name in REPLICATION_FILES:
        if name not in ours or name not in theirs or ours[name] == theirs[name]:
            continue
        if same_kernels:
            named.append(f"{name} differs on the same CPU kernels")
        else:
            named += _close(json.loads((run_dir / name).read_text()), json.loads((reference / name).read_text()), name)[
                :3
            ]
    drawn = [{n for n in files if n.startswith(f"{layout.CARDS}/")} for files in (ours, theirs)]
    if drawn[0] and drawn[1] and drawn[0] != drawn[1]:
        extra, missing = (
            ", ".join(sorted(a - b)[:4]) or "none" for a, b in ((drawn[0], drawn[1]), (drawn[1], drawn[0]))
        )
        named.append(f"the cards drew other features: {extra} instead of {missing}")
    return named


def _verdicts(run_dir: Path, claims: list[Claim]) -> dict[str, str]:
    """The run's recorded verdicts (verdicts.json, checked against the manifest), else computed."""
    run = RunData(run_dir)
    if run.has(layout.VERDICTS):
        return {row["id"]: row["verdict"] for row in run.json(layout.VERDICTS)}
    return {r.claim.id: r.verdict for r in evaluate_all(claims, run)}
