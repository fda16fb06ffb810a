"""Variants of a run: the SAE retrained with other seeds, and the ablations the write-up suggests.

Seed robustness. Seed 0 is the faithful run itself; seeds 1..N-1 train and analyze in ``<run>/seeds/seed<k>/``
(the capture files are hard links, never copies or re-captures). Where the model samples while
generating (the original's sampling was unseeded), sampling seeds 1..M-1 capture anew in
``<run>/seeds/sampling<k>/``. Every claim gets its measured
value and verdict per seed, an interval, and one combined verdict: the common verdict, or
``inconclusive`` when the seeds disagree. Features are matched across seeds by the best cosine
similarity of their decoder directions.

Ablations. Each is a named set of config overrides, run in ``<run>/variants/<name>/`` and reported
side by side with the faithful run: sparsity, L0, FVU, dead fraction, and the claims whose verdict
changes. An ablation that changes only which positions the capture keeps (per_token) feeds the run's
own generated sequences through the model once, instead of generating them again. One that generates
anew batches its prompts where the model decodes greedily (the batched capture stores the same samples
as one prompt at a time), and captures one prompt at a time, as the run, where it samples; its row
says which, and why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from replication import artifacts, layout
from replication.claims import Claim
from replication.config import ABLATIONS, load_profile
from replication.errors import ReplicationError
from replication.metrics import METRICS
from replication.models import resolve_device
from replication.pipeline import FEEDS_ANY_GENERATION, cached_model, run_stage
from replication.rundata import RunData
from replication.stats import best_cosines
from replication.verdicts import Verdict, evaluate

ROW_METRICS = (
    "stop_epoch",
    "sample_code_l0",
    "val_fvu",
    "never_active_fraction",
    "ce_loss_recovered",
    "significant_topic_features",
    "decode_shaped_fraction",
)
SEQUENCES_REASON = (
    "the run's own generated sequences, fed once through the model: the variant changes only which "
    "positions are kept, so generating again would give the same tokens"
)
STABLE_COSINE = 0.9
RECAPTURE_BATCH_SIZE = 32
"""Prompts per ``generate`` when an ablation captures anew with a greedy model."""


def combine(verdicts: list[Verdict]) -> Verdict:
    """One verdict over seeds: the one they share, or inconclusive when they differ."""
    return verdicts[0] if len(set(verdicts)) == 1 else "inconclusive"


def recaptures(overrides: dict[str, Any]) -> bool:
    """Whether a variant with ``overrides`` needs a capture of its own (else it shares the run's)."""
    return any(key.startswith(("model.", "capture.")) for key in overrides)


def feeds_run_sequences(overrides: dict[str, Any]) -> bool:
    """Whether a variant's capture differs from the run's only in what it keeps of the same
    generation (``capture.positions``): it then feeds the run's own sequences instead of generating."""
    keys = [key for key in overrides if key.startswith(("model.", "capture."))]
    feeds = all(key.removeprefix("capture.") in FEEDS_ANY_GENERATION for key in keys)
    return bool(keys) and feeds and overrides.get("capture.positions") == "all"


def capture_batching(reference: RunData, overrides: dict[str, Any]) -> tuple[int, str]:
    """The ``capture.batch_size`` of a variant that captures anew, and why: batched where the model
    decodes greedily, where a batch stores what one prompt at a time stores (same tokens,
    activations equal to float32 summation order, 1e-4 relative); the run's own where it samples,
    since a batch draws from one random stream and its samples would differ."""
    own = reference.config.capture.batch_size
    if "capture.batch_size" in overrides:
        return int(overrides["capture.batch_size"]), "set by the ablation's overrides"
    if any(key.startswith("model.") for key in overrides):  # another model: its own generation config
        cfg = load_profile(str(reference.root / layout.CONFIG), overrides)
        samples = bool(cached_model(cfg.model, resolve_device(cfg.capture.device)).model.generation_config.do_sample)
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


def variant_run(directory: Path, run_dir: Path, overrides: dict[str, Any], progress: bool) -> Path:
    """The run's config with ``overrides``, run in ``directory``: a new capture only when the
    overrides touch the model or the capture, else the run's capture files shared as hard links."""
    cfg = load_profile(str(run_dir / layout.CONFIG), overrides)
    recapture = recaptures(overrides)
    if not recapture:
        for name in artifacts.stage_outputs(run_dir):
            if name in layout.CAPTURE_FILES:
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    try:
                        os.link(run_dir / name, target)
                    except OSError:  # another file system: a copy holds the same bytes
                        shutil.copy2(run_dir / name, target)
    for stage in layout.STAGES if recapture else layout.STAGES[1:]:
        run_stage(stage, cfg, directory, progress=progress)
    return directory


def run_seeds(
    run_dir: Path, claims: list[Claim], n_seeds: int, sampling_seeds: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Retrain with SAE seeds 1..n_seeds-1 and, where the model samples while generating, capture
    again with sampling seeds 1..sampling_seeds-1 (SAE seed 0); evaluate every claim on every run,
    write ``seeds.json``."""
    if n_seeds < 2:
        raise ReplicationError(f"--seeds {n_seeds}: at least 2 seeds are needed")
    if sampling_seeds < 1:
        raise ReplicationError(f"--sampling-seeds {sampling_seeds}: at least 1 is needed (1 = the run's own)")
    reference = RunData(run_dir)
    if reference.config.train.seed != 0:
        raise ReplicationError(f"{run_dir} was trained with train.seed={reference.config.train.seed}, not 0")
    runs = [reference] + [
        RunData(variant_run(run_dir / layout.SEED_RUNS / f"seed{k}", run_dir, {"train.seed": k}, progress))
        for k in range(1, n_seeds)
    ]
    samples = bool(reference.info["generation"]["do_sample"])
    first = reference.config.capture.sampling_seed
    sampling_values = [first + k for k in range(sampling_seeds)] if samples else [first]
    sampled = [
        RunData(
            variant_run(run_dir / layout.SEED_RUNS / f"sampling{k}", run_dir, {"capture.sampling_seed": k}, progress)
        )
        for k in sampling_values[1:]
    ]
    per_claim = {}
    for claim in claims:
        results = [evaluate(claim, run) for run in runs]
        resampled = [evaluate(claim, run) for run in sampled]
        measured = [r.measured for r in results + resampled]
        numbers = [m for m in measured if isinstance(m, int | float) and not isinstance(m, bool)]
        per_claim[claim.id] = {
            "verdicts": [r.verdict for r in results],
            "measured": [r.measured for r in results],
            "sampling_verdicts": [r.verdict for r in resampled],
            "sampling_measured": [r.measured for r in resampled],
            "interval": [min(numbers), max(numbers)] if len(numbers) == len(measured) else None,
            "combined": combine([r.verdict for r in results + resampled]),
        }
    live = reference.codes.max(axis=0) > 0
    directions = [run.sae.decoder.weight.detach().numpy() for run in runs]
    best = np.stack([best_cosines(directions[0][:, live], d) for d in directions[1:]])
    # The baseline: as many random directions in the same dimension as a seed has features.
    random = np.random.default_rng(0).standard_normal(directions[0].shape)
    summary = {
        "seeds": list(range(n_seeds)),
        "sampling": {
            "seeds": sampling_values,
            "applies": samples,
            "note": (
                "each sampling seed is a new capture, trained with SAE seed 0"
                if samples
                else f"{reference.info['model']} decodes greedily (do_sample=false): every sampling seed "
                "gives the same capture, so only the run's own is used"
            ),
        },
        "claims": per_claim,
        "features": {
            "live": int(live.sum()),
            "stable": int((best >= STABLE_COSINE).all(axis=0).sum()),
            "threshold": STABLE_COSINE,
            "median_best_cosine": [float(np.median(b)) for b in best],
            "random_median_best_cosine": float(np.median(best_cosines(directions[0][:, live], random))),
        },
    }
    artifacts.write_json(run_dir / layout.SEEDS, summary)
    artifacts.record_addition(
        run_dir, "seeds", [run_dir / layout.SEEDS], {"n_seeds": n_seeds, "sampling_seeds": sampling_values}
    )
    return summary


def _row(run: RunData, claims: list[Claim]) -> dict[str, Any]:
    row = {name: METRICS[name].compute(run) for name in ROW_METRICS}
    row["last_sparsity"] = run.history[-1]["sparsity"]
    row["verdicts"] = {claim.id: evaluate(claim, run).verdict for claim in claims}
    return row


def run_ablations(run_dir: Path, claims: list[Claim], names: list[str], progress: bool = True) -> dict[str, Any]:
    """Each named ablation beside the faithful run; ``ablations.json`` compares them."""
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ReplicationError(f"unknown ablation {unknown[0]!r} (known: {', '.join(ABLATIONS)})")
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
                size, reason = capture_batching(reference, overrides)
                batching = {"capture_batch_size": size, "capture_batch_reason": reason}
                settings = {"capture.batch_size": size}
            directory = variant_run(directory, run_dir, {**overrides, **settings}, progress)
        except ReplicationError as exc:  # e.g. a tokenizer without a chat template
            rows[name] = {"description": description, "overrides": overrides, "not_applicable": str(exc)}
            continue
        row = _row(RunData(directory), claims)
        row["changed"] = sorted(cid for cid, v in row["verdicts"].items() if v != faithful["verdicts"][cid])
        rows[name] = {"description": description, "overrides": overrides, **batching, **row}
    artifacts.write_json(run_dir / layout.ABLATIONS, rows)
    artifacts.record_addition(run_dir, "ablations", [run_dir / layout.ABLATIONS], {"ablations": names})
    return rows
