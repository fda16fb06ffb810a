"""Planted features at the study's shape: could the write-up's recipe, or the field's, recover sparse
directions known to be there, at the study's 98 samples and at more? ``planted.json``.

The data are synthetic, apart from any language model: each row sums a few of N random unit
directions with exponential magnitudes, scaled to the run's median row norm. Recovery is each
planted direction's best cosine with a decoder column, and the mean cosine of the one-to-one best
match (the Hungarian method), as SAELens's synthetic-data evaluation matches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from replication.config import ABLATIONS, TrainConfig, load_profile
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.autoencoder import SparseAutoencoder
from replication.sae.data import sample_rows
from replication.sae.training import train_sae

SIZES = (98, 300, 1_000, 3_000, 10_000, 30_000)
"""Samples (rows): the study's 98, then up to about 300 times more (some 3 minutes on 2 CPU cores)."""
FEATURES = 256
ACTIVE = 5
"""Planted features on in each row."""
RECOVERED = 0.9
"""A planted direction counts as recovered when some decoder column has cosine >= 0.9 with it."""
NOISE = 0.01
"""Gaussian noise per value, as a share of the mean row's per-value scale."""
RECIPES = {"faithful": None, "standard_sae": "standard_sae"}
"""The write-up's recipe (the run's config) and the field's (the ablation of that name)."""


def synthetic(d: int, rows: int, scale: float, seed: int, features: int = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """(rows, d) activations of ``ACTIVE`` of ``features`` random unit directions each, rows scaled to
    a median norm of about ``scale``; and the directions."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((features, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    magnitudes = np.zeros((rows, features))
    on = np.argsort(rng.random((rows, features)), axis=1)[:, :ACTIVE]
    np.put_along_axis(magnitudes, on, rng.exponential(size=(rows, ACTIVE)), axis=1)
    x = magnitudes @ directions
    x *= scale / np.median(np.linalg.norm(x, axis=1))
    x += rng.normal(scale=NOISE * scale / np.sqrt(d), size=x.shape)
    return x.astype(np.float32), directions


def recovery(sae: SparseAutoencoder, directions: np.ndarray) -> dict[str, float]:
    """How well the decoder's columns find the planted directions."""
    columns = sae.decoder.weight.detach().numpy().T
    columns = columns / np.maximum(np.linalg.norm(columns, axis=1, keepdims=True), 1e-12)
    cosines = directions @ columns.T  # (planted, features)
    best = cosines.max(axis=1)
    planted, matched = linear_sum_assignment(-cosines)
    return {
        "recovered": int((best >= RECOVERED).sum()),
        "median_best_cosine": float(np.median(best)),
        "matched_mean_cosine": float(cosines[planted, matched].mean()),
    }


def _recipe(run: RunData, name: str | None) -> TrainConfig:
    overrides = ABLATIONS[name][1] if name is not None else {}
    return load_profile(str(run.root / layout.CONFIG), overrides).train


def run_planted(
    run_dir: Path, sizes: tuple[int, ...] = SIZES, seed: int = 0, features: int = FEATURES, progress: bool = False
) -> dict[str, Any]:
    """Each recipe trained on planted data of each size (the run's width and row scale)."""
    run = RunData(run_dir)
    rows = sample_rows(run.activations)[0].numpy()
    scale = float(np.median(np.linalg.norm(rows, axis=1)))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in RECIPES}
    recipes = {name: _recipe(run, ablation) for name, ablation in RECIPES.items()}
    for size in tqdm(sizes, desc="planted", unit="size", disable=not progress):
        x, directions = synthetic(rows.shape[1], size, scale, seed, features)
        cut = int(run.config.train.train_fraction * size)
        for name, cfg in recipes.items():
            trained = train_sae(torch.from_numpy(x[:cut]), torch.from_numpy(x[cut:]), cfg, progress=False)
            results[name].append({"samples": size, "epochs": len(trained.history), **recovery(trained.sae, directions)})
    result = {"features": features, "active": ACTIVE, "threshold": RECOVERED, "recipes": results}
    artifacts.write_json(run_dir / layout.PLANTED_JSON, result)
    artifacts.record_addition(run_dir, "planted", [run_dir / layout.PLANTED_JSON], {"sizes": list(sizes)})
    return result
