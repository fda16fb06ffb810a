"""Rounding bands: how far each number of the whole replication moves under other float rounding.

A reference run is rerun, from its own capture, on other torch thread counts (each splits float32
sums in its own way); a number's band is the 95% prediction bound on the difference between two
runs, ``t(0.975, n - 1) * s * sqrt(2)`` over the n runs' values. Training amplifies rounding, so a
minibatch SAE of 28 epochs gets a far wider band than one full-batch pass."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from replication.rundir import artifacts, layout

FILES = (layout.SEEDS_JSON, layout.ABLATIONS_JSON)
"""What the reruns derive again beyond the stages: the SAE seeds and the ablations."""
CONFIDENCE = 0.95


def leaves(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """Every number of a JSON value, named by its path (``file.key[i].key``), as ``compare`` names it."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{where}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield where, float(value)


def band(values: list[float]) -> float:
    """The 95% prediction bound on |a - b| for two more runs, from the spread of ``values``."""
    n = len(values)
    spread = float(np.std(values, ddof=1))
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * spread * math.sqrt(2)


def measure(reference: Path, reruns: list[Path]) -> dict[str, float]:
    """Each number of ``FILES`` that moved in some rerun, with its band."""
    bands: dict[str, float] = {}
    for name in FILES:
        if not (reference / name).is_file():
            continue
        runs = [dict(leaves(json.loads((run / name).read_text()), name)) for run in [reference, *reruns]]
        for where, value in runs[0].items():
            values = [value, *(run[where] for run in runs[1:] if where in run)]
            if len(values) == len(runs) and len(set(values)) > 1:
                bands[where] = band(values)
    return bands


def read(reference: Path) -> dict[str, float]:
    """The reference's bands, or none where its manifest lists no ``bands.json``."""
    if layout.BANDS_JSON not in artifacts.read_manifest(reference).get("files", {}):
        return {}
    return dict(json.loads((reference / layout.BANDS_JSON).read_text())["bands"])
