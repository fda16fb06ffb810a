"""Part 4 with power on a finished run: the probe ceiling, each topic's feature test on the trained and
the untrained SAE, and the planted strength each test detects; ``power.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from replication.evaluation import power, topics
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of
from replication.sae.data import sample_rows

PLANTED_PERMUTATIONS = 200
"""The feature test's shuffles on each planted set: p resolves to 1/201, enough to call p < 0.05."""


Flags = Callable[[np.ndarray, np.ndarray], bool]


def _sae_tests(encode: Callable[[np.ndarray], np.ndarray], strata: list[str], k: int) -> tuple[Flags, Flags]:
    """The feature test and the write-up's top-k test of one SAE, on (activations, labels)."""

    def features(x: np.ndarray, labels: np.ndarray) -> bool:
        return power.feature_test(encode(x), labels, strata, PLANTED_PERMUTATIONS).p < topics.ALPHA

    def top_k(x: np.ndarray, labels: np.ndarray) -> bool:
        return power.top_k_test(encode(x), labels, strata, k) < topics.ALPHA

    return features, top_k


def _topic(run: RunData, x: np.ndarray, topic: str, strengths: tuple[float, ...], directions: int) -> dict[str, Any]:
    is_topic = np.array([label == topic for label in prompt_topics(run)])
    strata, k = sample_types(run), run.config.analyze.top_k
    control = control_of(run)
    saes = {"trained": power.encoder(run.sae)} | ({"untrained": power.encoder(control.sae)} if control else {})
    probe = power.probe_test(x, is_topic, strata)
    features = {name: power.feature_test(encode(x), is_topic, strata) for name, encode in saes.items()}
    tests: dict[str, Flags] = {"probe": lambda p, labels: power.probe_auroc(p, labels) > probe.threshold}
    for name, encode in saes.items():
        tests[f"features, {name}"], tests[f"top {k}, {name}"] = _sae_tests(encode, strata, k)
    rates = power.detection_rates(x, is_topic, strata, tests, strengths=strengths, directions=directions)
    return {
        "prompts": int(is_topic.sum()),
        "probe": vars(probe),
        "features": {name: vars(test) for name, test in features.items()},
        "rates": rates,
        "detected": {name: power.smallest_detected(strengths, r) for name, r in rates.items()},
    }


def run_power(
    run_dir: Path, strengths: tuple[float, ...] = power.STRENGTHS, directions: int = power.DIRECTIONS
) -> dict[str, Any]:
    """Each tested topic's probe, feature tests and detection rates; written to ``power.json``."""
    run = RunData(run_dir)
    x = sample_rows(run.activations)[0].numpy()  # the rows the analysis encodes, one per prompt
    result = {
        "strengths": list(strengths),
        "directions": directions,
        "detected_at": power.DETECTED,
        "topics": {topic: _topic(run, x, topic, strengths, directions) for topic in topics.TESTED},
    }
    artifacts.write_json(run_dir / layout.POWER_JSON, result)
    artifacts.record_addition(run_dir, "power", [run_dir / layout.POWER_JSON], {})
    return result
