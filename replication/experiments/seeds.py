"""Seed robustness: the SAE retrained with other seeds beside the run, every claim judged on each.

Seed 0 is the faithful run itself; seeds 1..N-1 train and analyze (no splice test) in
``<run>/seeds/seed<k>/`` (the capture files are hard links, never copies or re-captures). Where the
model samples while generating (the original's sampling was unseeded), sampling seeds 1..M-1 capture
anew in ``<run>/seeds/sampling<k>/``.
Every claim gets its value and verdict per seed (each with its own control), an interval, and one
combined verdict (``verdicts.combine``); a p-value is Bonferroni-corrected for the runs it is one of.
Features are matched across seeds by the best cosine similarity of their decoder directions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from replication.errors import ReplicationError
from replication.evaluation.claims import Claim
from replication.evaluation.stats import STABLE_COSINE, best_cosines
from replication.evaluation.verdicts import combine, evaluate
from replication.experiments.variant import variant_run
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of
from replication.stages.context import Context

UNREAD = ("splice",)
"""Stages a seed's run leaves out: no claim reads them, and the run's own is the one reported."""


def run_seeds(
    run_dir: Path,
    claims: list[Claim],
    n_seeds: int,
    sampling_seeds: int = 1,
    *,
    ctx: Context | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Retrain with SAE seeds 1..n_seeds-1 and, where the model samples while generating, capture
    again with sampling seeds 1..sampling_seeds-1 (SAE seed 0); evaluate every claim on every run,
    write ``seeds.json``."""
    if n_seeds < 2:
        raise ReplicationError(f"--seeds {n_seeds}: at least 2 seeds are needed")
    if sampling_seeds < 1:
        raise ReplicationError(f"--sampling-seeds {sampling_seeds}: at least 1 is needed (1 = the run's own)")
    ctx = ctx if ctx is not None else Context()
    reference = RunData(run_dir)
    if reference.config.train.seed != 0:
        raise ReplicationError(f"{run_dir} was trained with train.seed={reference.config.train.seed}, not 0")
    runs = [reference] + [
        RunData(
            variant_run(
                run_dir / layout.SEED_RUNS / f"seed{k}", run_dir, {"train.seed": k}, ctx, progress, without=UNREAD
            )
        )
        for k in range(1, n_seeds)
    ]
    samples = bool(reference.info["generation"]["do_sample"])
    first = reference.config.capture.sampling_seed
    sampling_values = [first + k for k in range(sampling_seeds)] if samples else [first]
    sampled = [
        RunData(
            variant_run(
                run_dir / layout.SEED_RUNS / f"sampling{k}",
                run_dir,
                {"capture.sampling_seed": k},
                ctx,
                progress,
                without=UNREAD,
            )
        )
        for k in sampling_values[1:]
    ]
    per_claim = {}
    family = len(runs) + len(sampled)
    for claim in claims:
        results = [evaluate(claim, run, control_of(run), family) for run in runs]
        resampled = [evaluate(claim, run, control_of(run), family) for run in sampled]
        measured = [r.measured for r in results + resampled]
        numbers = [m for m in measured if isinstance(m, int | float) and not isinstance(m, bool)]
        per_claim[claim.id] = {
            "verdicts": [r.verdict for r in results],
            "whys": [r.why for r in results],
            "measured": [r.measured for r in results],
            "sampling_verdicts": [r.verdict for r in resampled],
            "sampling_measured": [r.measured for r in resampled],
            "interval": [min(numbers), max(numbers)] if len(numbers) == len(measured) else None,
        }
        per_claim[claim.id]["combined"], per_claim[claim.id]["combined_why"] = combine(
            [(r.verdict, r.why) for r in results + resampled]
        )
    live = reference.codes.max(axis=0) > 0
    directions = [run.sae.decoder.weight.detach().numpy() for run in runs]
    best = np.stack([best_cosines(directions[0][:, live], d) for d in directions[1:]])
    # The baseline: as many random directions in the same dimension as a seed has features.
    random = np.random.default_rng(0).standard_normal(directions[0].shape)
    summary = {
        "seeds": list(range(n_seeds)),
        "correction": f"Bonferroni over {family} runs: a p-value counts as significant below alpha / {family}",
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
    artifacts.write_json(run_dir / layout.SEEDS_JSON, summary)
    artifacts.record_addition(
        run_dir, "seeds", [run_dir / layout.SEEDS_JSON], {"n_seeds": n_seeds, "sampling_seeds": sampling_values}
    )
    return summary
