"""The stage runner: a stage runs when its config, inputs or outputs changed, and is recorded in the
manifest with the sha256 of every file it read (through a ``RunData``) and wrote (bodies: ``steps``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from replication.config import RunConfig
from replication.errors import ReplicationError
from replication.rundir import artifacts, layout, provenance
from replication.rundir.reader import RunData
from replication.stages import steps
from replication.stages.capture import read_prompts
from replication.stages.context import Context
from replication.stages.tokens import tokens_stage

Body = Callable[[RunConfig, RunData, Context, bool], tuple[list[str], dict[str, Any]]]


@dataclass(frozen=True)
class Stage:
    """A stage: the config sections its output depends on, and its body, which reads the run's files
    through a RunData and returns the names of the files it wrote and facts to record."""

    sections: tuple[str, ...]
    body: Body
    overlay: str | None = None
    """The subdirectory whose SAE files this stage reads and writes (the control's)."""


STAGES = {
    "capture": Stage(("model", "capture"), steps.capture_stage),
    "train": Stage(("train",), steps.train_stage),
    "analyze": Stage(("train", "analyze"), steps.analyze_stage),
    "splice": Stage(("model", "capture", "train"), steps.splice_stage),
    "control": Stage(("train", "analyze"), steps.control_stage, overlay=layout.CONTROL),
    "shuffled": Stage(("train",), steps.shuffled_stage, overlay=layout.SHUFFLED),
    layout.TOKENS_STAGE: Stage(("model", "capture", "train"), tokens_stage),
}
assert tuple(STAGES) == (*layout.STAGES, layout.TOKENS_STAGE)


TF32_OVERRIDE = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"
"""Set by some NVIDIA containers: cuBLAS then computes float32 products in TF32 (1e-3 relative)."""


def pin_float32() -> None:
    """float32 products in float32 (the study's dtype), whatever the environment asks: torch reads the
    override once, at its first float32 product on CUDA or first look at the setting, so it is removed
    before either."""
    os.environ.pop(TF32_OVERRIDE, None)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def current_digest(cfg: RunConfig, run_dir: Path) -> Callable[[str], str | None]:
    """The sha256 an input has now: a run file's, or (``layout.CORPUS``) the corpus's."""

    def digest(name: str) -> str | None:
        if name == layout.CORPUS:
            return steps.corpus_digest(read_prompts(cfg.prompts_path()))
        path = Path(os.path.normpath(run_dir / name))  # names of another run's files hold ".."
        return artifacts.sha256_file(path) if path.is_file() else None

    return digest


def run_stage(
    name: str,
    cfg: RunConfig,
    run_dir: Path,
    *,
    ctx: Context | None = None,
    progress: bool = True,
    force: bool = False,
) -> bool:
    """Run one stage, or skip it when its config, inputs and outputs are unchanged; True if it ran.
    ``ctx`` holds what the process already loaded (a fresh one when None)."""
    # Files are written atomically and the manifest last: a run killed at any moment leaves the previous
    # complete state, and the same command finishes it.
    if run_dir.exists() and not run_dir.is_dir():
        raise ReplicationError(f"--out {run_dir} is a file, not a run directory")
    pin_float32()
    stage = STAGES[name]
    key = cfg.section_hash(stage.sections)
    if not force and artifacts.stage_is_current(run_dir, name, key, current_digest(cfg, run_dir)):
        return False
    started = time.perf_counter()
    provenance.reset_peak_memory()
    run = RunData(run_dir, overlay=stage.overlay)
    outputs, info = stage.body(cfg, run, ctx if ctx is not None else Context(), progress)
    config = cfg.to_dict()
    artifacts.write_config(run_dir, config)
    record = {
        "stage_hash": key,
        "inputs": {name: digest for name, digest in run.reads.items() if name not in outputs},
        "outputs": outputs,
        "wall_s": time.perf_counter() - started,
        **provenance.peak_memory(),
        **info,
    }
    files = [run_dir / name for name in outputs]
    artifacts.record_stage(run_dir, name, files=files, config=config, config_hash=cfg.hash(), info=record)
    return True


def run_stages(
    names: tuple[str, ...],
    cfg: RunConfig,
    run_dir: Path,
    *,
    ctx: Context | None = None,
    progress: bool = True,
    force: bool = False,
) -> list[str]:
    """Run ``names`` in order; where they are the pipeline's stages after the capture, then every stage
    beyond the pipeline the directory records from an earlier run (the token states), which reads
    their files and is stale once they change. The stages that ran."""
    ctx = ctx if ctx is not None else Context()
    recorded = artifacts.read_manifest(run_dir).get("stages", {})
    whole = set(layout.STAGES[1:]) <= set(names)
    later = tuple(s for s in STAGES if whole and s not in layout.STAGES and s in recorded)
    ran = [stage for stage in names if run_stage(stage, cfg, run_dir, ctx=ctx, progress=progress, force=force)]
    return ran + [stage for stage in later if run_stage(stage, cfg, run_dir, ctx=ctx, progress=progress)]
