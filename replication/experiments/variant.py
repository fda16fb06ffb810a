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


def variant_run(directory: Path, run_dir: Path, overrides: dict[str, Any], ctx: Context, progress: bool) -> Path:
    """The run's config with ``overrides``, run in ``directory``: a new capture only when the
    overrides touch the model or the capture, else the run's capture files shared as hard links."""
    cfg = load_profile(str(run_dir / layout.CONFIG), overrides)
    recapture = recaptures(overrides)
    if not recapture:
        for name in artifacts.stage_outputs(run_dir):
            if name in layout.CAPTURE_FILES:
                artifacts.link_or_copy(run_dir / name, directory / name)
    run_stages(layout.STAGES if recapture else layout.STAGES[1:], cfg, directory, ctx=ctx, progress=progress)
    return directory
