"""A variant of a run: the run's config with overrides, run in a directory beside it, sharing the run's
capture (as hard links) unless the overrides touch the model or the capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replication.config import load_profile
from replication.rundir import artifacts, layout
from replication.stages.context import Context
from replication.stages.runner import run_stages


def recaptures(overrides: dict[str, Any]) -> bool:
    """Whether a variant with ``overrides`` needs a capture of its own (else it shares the run's)."""
    return any(key.startswith(("model.", "capture.")) for key in overrides)


def variant_run(
    directory: Path,
    run_dir: Path,
    overrides: dict[str, Any],
    ctx: Context,
    progress: bool,
    *,
    without: tuple[str, ...] = (),
) -> Path:
    """The run's config with ``overrides``, run in ``directory`` (its stages but ``without``): a new
    capture only when the overrides touch the model or the capture, else the run's capture files shared
    as hard links."""
    cfg = load_profile(str(run_dir / layout.CONFIG), overrides)
    recapture = recaptures(overrides)
    if not recapture:
        manifest = share_capture(run_dir, directory, ())
        if not (directory / layout.MANIFEST).is_file():
            artifacts.write_json(directory / layout.MANIFEST, manifest)
    stages = [s for s in layout.STAGES[0 if recapture else 1 :] if s not in without]
    run_stages(tuple(stages), cfg, directory, ctx=ctx, progress=progress)
    return directory


def share_capture(run_dir: Path, directory: Path, also: tuple[str, ...]) -> dict[str, Any]:
    """The run's capture files (and ``also``) in ``directory`` as hard links, and the run's manifest
    cut to their record: a file a committed reference leaves out stays recorded, not linked."""
    manifest = artifacts.read_manifest(run_dir)
    kept = {*also, *manifest["stages"]["capture"]["outputs"]}
    for name in kept:
        if (run_dir / name).is_file():
            artifacts.link_or_copy(run_dir / name, directory / name)
    manifest["files"] = {name: digest for name, digest in manifest["files"].items() if name in kept}
    manifest["stages"] = {"capture": manifest["stages"]["capture"]}
    return manifest
