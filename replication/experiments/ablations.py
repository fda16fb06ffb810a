"""Ablations: named config variants (``config.ABLATIONS``) run beside the faithful run, side by side.

An ablation that changes only which positions the capture keeps (per_token) feeds the run's own
sequences through the model instead of generating them again; one that generates anew batches its
prompts only where the model decodes greedily. Its row in ``ablations.json`` says which, and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from replication.config import ABLATIONS, load_profile
from replication.errors import ReplicationError
from replication.evaluation.claims import Claim
from replication.evaluation.metrics import METRICS
from replication.evaluation.verdicts import evaluate
from replication.experiments.variant import recaptures, variant_run
from replication.model.loading import resolve_device
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of
from replication.stages.context import Context
from replication.stages.steps import FEEDS_ANY_GENERATION

ROW_METRICS = (
    "stop_epoch",
    "sample_code_l0",
    "val_fvu",
    "never_active_fraction",
    "ce_loss_recovered",
    "decode_shaped_fraction",
)
SEQUENCES_REASON = (
    "the run's own generated sequences, fed once through the model: the variant changes only which "
    "positions are kept, so generating again would give the same tokens"
)
RECAPTURE_BATCH_SIZE = 32
"""Prompts per ``generate`` when an ablation captures anew with a greedy model."""


def feeds_run_sequences(overrides: dict[str, Any]) -> bool:
    """Whether a variant's capture differs from the run's only in what it keeps of the same
    generation (``capture.positions``): it then feeds the run's own sequences instead of generating."""
    keys = [key for key in overrides if key.startswith(("model.", "capture."))]
    feeds = all(key.removeprefix("capture.") in FEEDS_ANY_GENERATION for key in keys)
    return bool(keys) and feeds and overrides.get("capture.positions") == "all"


def capture_batching(reference: RunData, overrides: dict[str, Any], ctx: Context) -> tuple[int, str]:
    """The ``capture.batch_size`` of a variant that captures anew, and why: batched where the model
    decodes greedily, the run's own where it samples."""
    # Greedy, a batch stores what one prompt at a time stores (same tokens, activations equal to float32
    # summation order, 1e-4 relative); sampling, a batch draws from one random stream and differs.
    own = reference.config.capture.batch_size
    if "capture.batch_size" in overrides:
        return int(overrides["capture.batch_size"]), "set by the ablation's overrides"
    if any(key.startswith("model.") for key in overrides):  # another model: its own generation config
        cfg = load_profile(str(reference.root / layout.CONFIG), overrides)
        samples = bool(ctx.model(cfg.model, resolve_device(cfg.capture.device)).model.generation_config.do_sample)
    else:
        samples = bool(reference.info["generation"]["do_sample"])
    if samples:
        return own, (
            "the model samples while generating: a batch draws from one random stream, so it would not "
            "store the samples of one prompt at a time; captured as the run was"
        )
    return max(own, RECAPTURE_BATCH_SIZE), (
        "the model decodes greedily (do_sample=false): a batch stores the same tokens as one prompt at a "
        "time, activations equal up to float32 summation order (1e-4 relative)"
    )


def _row(run: RunData, claims: list[Claim]) -> dict[str, Any]:
    row = {name: METRICS[name].compute(run) for name in ROW_METRICS}
    row["last_sparsity"] = run.history[-1]["sparsity"]
    control = control_of(run)
    row["verdicts"] = {claim.id: evaluate(claim, run, control).verdict for claim in claims}
    return row


def run_ablations(
    run_dir: Path,
    claims: list[Claim],
    names: list[str],
    *,
    ctx: Context | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Each named ablation beside the faithful run; ``ablations.json`` compares them."""
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ReplicationError(f"unknown ablation {unknown[0]!r} (known: {', '.join(ABLATIONS)})")
    ctx = ctx if ctx is not None else Context()
    reference = RunData(run_dir)
    faithful = _row(reference, claims)
    rows: dict[str, Any] = {"faithful": {"description": "the original's method", **faithful}}
    for name in names:
        description, overrides = ABLATIONS[name]
        directory = run_dir / layout.VARIANT_RUNS / name
        batching: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        try:
            if feeds_run_sequences(overrides):
                settings = {"capture.sequences_from": os.path.relpath(run_dir, directory)}
                batching = {"capture_sequences": SEQUENCES_REASON}
            elif recaptures(overrides):
                size, reason = capture_batching(reference, overrides, ctx)
                batching = {"capture_batch_size": size, "capture_batch_reason": reason}
                settings = {"capture.batch_size": size}
            directory = variant_run(directory, run_dir, {**overrides, **settings}, ctx, progress)
        except ReplicationError as exc:  # e.g. a tokenizer without a chat template
            rows[name] = {"description": description, "overrides": overrides, "not_applicable": str(exc)}
            continue
        row = _row(RunData(directory), claims)
        row["changed"] = sorted(cid for cid, v in row["verdicts"].items() if v != faithful["verdicts"][cid])
        rows[name] = {"description": description, "overrides": overrides, **batching, **row}
    artifacts.write_json(run_dir / layout.ABLATIONS_JSON, rows)
    artifacts.record_addition(run_dir, "ablations", [run_dir / layout.ABLATIONS_JSON], {"ablations": names})
    return rows
