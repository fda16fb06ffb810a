"""The rounding bands of a reference run: everything after its capture rerun as on other kernels
(``rundir/bands.py``). Each rerun perturbs the captured activations as another CPU's kernels
round them and runs on another torch thread count, whose float32 sums round otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from replication.evaluation.claims import Claim
from replication.experiments.ablations import run_ablations
from replication.experiments.seeds import run_seeds
from replication.experiments.variant import share_capture
from replication.rundir import artifacts, bands, layout
from replication.rundir.reader import RunData
from replication.stages.context import Context
from replication.stages.runner import run_stages

RERUNS = 4
"""Reruns beside the reference: with five runs, t(0.975, 4) = 2.78 widens the band for the few."""
NOISE = 5e-7
"""Relative noise on each captured value: the median relative difference between SmolLM2's capture on
AVX2 kernels (the committed run) and on AVX-512 kernels, measured over 20 prompts (per-sample
Frobenius differences 3e-7 to 6e-7)."""


def rerun_threads(own: int) -> list[int]:
    """The torch thread count of each rerun: one and two other than the reference's, in turn."""
    others = [t for t in (1, 2, 3) if t != own][:2]
    return [others[k % 2] for k in range(RERUNS)]


def clone(run_dir: Path, directory: Path, noise_seed: int | None) -> None:
    """The capture of ``run_dir`` as hard links to its files; with ``noise_seed``, its activations
    perturbed by ``NOISE``, as other kernels would round them."""
    shutil.rmtree(directory, ignore_errors=True)
    manifest = share_capture(run_dir, directory, (layout.CONFIG,))
    if noise_seed is not None:
        generator = torch.Generator().manual_seed(noise_seed)
        activations = directory / layout.ACTIVATIONS
        perturbed = {
            key: value * (1 + NOISE * torch.randn(value.shape, generator=generator))
            for key, value in artifacts.load_tensors(activations).items()
        }
        activations.unlink()  # a link: the reference's file stays as it is
        artifacts.save_tensors(activations, perturbed, {})
        manifest["files"][layout.ACTIVATIONS] = artifacts.sha256_file(activations)
    artifacts.write_json(directory / layout.MANIFEST, manifest)


def rerun(
    run_dir: Path,
    directory: Path,
    claims: list[Claim],
    *,
    threads: int,
    noise_seed: int | None,
    ctx: Context,
    progress: bool,
) -> Path:
    """Everything after ``run_dir``'s capture again in ``directory`` on ``threads`` torch threads:
    the stages, the SAE seeds and the ablations, as ``run_dir`` ran them."""
    reference = RunData(run_dir)
    seeds = reference.json(layout.SEEDS_JSON)
    ablations = [name for name in reference.json(layout.ABLATIONS_JSON) if name != "faithful"]
    clone(run_dir, directory, noise_seed)
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run_stages(layout.STAGES[1:], reference.config, directory, ctx=ctx, progress=progress, force=True)
        run_seeds(directory, claims, len(seeds["seeds"]), len(seeds["sampling"]["seeds"]), ctx=ctx, progress=progress)
        run_ablations(directory, claims, ablations, ctx=ctx, progress=progress)
    finally:
        torch.set_num_threads(own)
    return directory


def measure_bands(run_dir: Path, claims: list[Claim], *, progress: bool = True) -> str:
    """Rerun ``run_dir`` as on other kernels ``RERUNS`` times; write ``bands.json``. Each rerun has a
    process context of its own: the splice's clean and zero-ablated CE and the fed states are computed
    again on its thread count, not shared."""
    own = RunData(run_dir).manifest["stages"]["train"]["environment"]["torch_threads"]
    threads = rerun_threads(own)
    reruns = [
        rerun(
            run_dir,
            run_dir / layout.BAND_RUNS / f"rerun{k}",
            claims,
            threads=count,
            noise_seed=k,
            ctx=Context(),
            progress=progress,
        )
        for k, count in enumerate(threads, start=1)
    ]
    measured = bands.measure(run_dir, reruns)
    summary: dict[str, Any] = {
        "method": bands.__doc__.splitlines()[0] if bands.__doc__ else "",
        "threads": {"reference": own, "reruns": threads},
        "noise": NOISE,
        "confidence": bands.CONFIDENCE,
        "bands": measured,
    }
    path = run_dir / layout.BANDS_JSON
    artifacts.write_json(path, summary)
    inputs = {name: artifacts.sha256_file(run_dir / name) for name in bands.FILES}  # stale once they change
    artifacts.record_addition(run_dir, "bands", [path], {"threads": threads, "noise": NOISE, "inputs": inputs})
    return f"bands: {len(measured)} number(s) moved in {len(reruns)} reruns as on other kernels -> {path}"
