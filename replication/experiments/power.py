"""Part 4 with power on a finished run (``power.json``): is a topic linearly in the activations (a
probe), does some SAE feature track it (each feature's AUROC, family-wise), and how strong a planted
topic direction each test detects.

A miss is evidence of absence only where the test finds a planted topic: a random set of prompts of the
topic's size and sample types (labels shuffled within sample type, so no real topic is in it), whose rows
get a random unit direction added at a share of the median row norm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from replication.evaluation import stats, topics
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of
from replication.sae.autoencoder import SparseAutoencoder
from replication.sae.data import sample_rows

PERMUTATIONS = 1000
"""Shuffles of the topic labels (within sample type) for the feature test's null."""
PROBE_PERMUTATIONS = 100
"""Shuffles for the probe's null: each refits the probe on every fold."""
FOLDS = 5
STRENGTHS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
"""Planted strengths, as shares of the median row norm."""
DIRECTIONS = 10
"""Random planted directions per strength: the detection rate is over these."""
DETECTED = 0.8
"""A test detects a strength when it flags at least this share of its planted directions."""


def auroc_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The AUROC of each row of ``scores`` (features, n) for each row of ``labels`` (draws, n, 0/1):
    (features, draws), ties counted half (average ranks, the Mann-Whitney U)."""
    ranks = rankdata(scores, axis=1)
    positives = labels.sum(axis=-1)
    rank_sums = ranks @ labels.T.astype(float)
    return np.asarray((rank_sums - positives * (positives + 1) / 2) / (positives * (labels.shape[-1] - positives)))


@dataclass(frozen=True)
class FeatureTest:
    """The family-wise test that SOME live feature's code ranks a topic's prompts above the rest."""

    auroc: float
    """The best AUROC over live features (0.5: chance; 1: every topic prompt above every other)."""
    feature: int | None
    p: float
    threshold: float
    """The null's 95th percentile: the best AUROC chance gives."""


def feature_test(
    codes: np.ndarray, is_topic: np.ndarray, strata: Sequence[str], permutations: int = PERMUTATIONS, seed: int = 0
) -> FeatureTest:
    """The best AUROC of any live feature for the topic, against the same maximum under shuffled
    labels (within sample type)."""
    live = np.flatnonzero(codes.max(axis=0) > 0)
    if not live.size:
        return FeatureTest(0.5, None, 1.0, 1.0)
    scores = codes[:, live].T

    def best(labels: np.ndarray) -> np.ndarray:
        return np.asarray(auroc_matrix(scores, np.atleast_2d(labels)).max(axis=0))

    observed = auroc_matrix(scores, is_topic[None].astype(float))[:, 0]
    null = stats.permutation_null(best, is_topic.astype(float), permutations, seed, strata)
    return FeatureTest(
        float(observed.max()),
        int(live[observed.argmax()]),
        stats.tail_pvalue(null, float(observed.max())),
        float(np.quantile(null, 1 - topics.ALPHA)),
    )


def probe_auroc(x: np.ndarray, is_topic: np.ndarray, seed: int = 0) -> float:
    """Cross-validated AUROC of a linear probe (standardised inputs, L2 logistic regression): each
    prompt scored by a probe that never saw it."""
    folds = min(FOLDS, int(is_topic.sum()), int((~is_topic).sum()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    scores = np.zeros(len(is_topic))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, is_topic):
        scores[test] = probe.fit(x[train], is_topic[train]).decision_function(x[test])
    return float(roc_auc_score(is_topic, scores))


@dataclass(frozen=True)
class ProbeTest:
    auroc: float
    p: float
    threshold: float
    """The null's 95th percentile: the AUROC a probe reaches on shuffled labels."""


def probe_test(
    x: np.ndarray, is_topic: np.ndarray, strata: Sequence[str], permutations: int = PROBE_PERMUTATIONS, seed: int = 0
) -> ProbeTest:
    """The probe's AUROC against the same probe refitted on shuffled labels (within sample type)."""
    observed = probe_auroc(x, is_topic, seed)
    null = stats.permutation_null(
        lambda labels: np.array([probe_auroc(x, row.astype(bool), seed) for row in np.atleast_2d(labels)]),
        is_topic.astype(float),
        permutations,
        seed,
        strata,
    )
    return ProbeTest(observed, stats.tail_pvalue(null, observed), float(np.quantile(null, 1 - topics.ALPHA)))


def planted(x: np.ndarray, is_topic: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` with a random unit direction, ``strength`` times the median row norm, added to the topic's rows."""
    drawn = rng.standard_normal(x.shape[1])
    direction = drawn / np.linalg.norm(drawn)
    scale = strength * float(np.median(np.linalg.norm(x, axis=1)))
    return np.asarray(x + np.outer(is_topic, direction) * scale, dtype=x.dtype)


def encoder(sae: SparseAutoencoder) -> Callable[[np.ndarray], np.ndarray]:
    def encode(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(sae.encode(torch.from_numpy(x)).numpy())

    return encode


def top_k_test(codes: np.ndarray, is_topic: np.ndarray, strata: Sequence[str], k: int) -> float:
    """The write-up's design, as the topic claims test it: the most topic prompts in any live
    feature's positive top k, family-wise (``topics.max_hits_test``); its p."""
    live = np.flatnonzero(codes.max(axis=0) > 0)
    if not live.size:
        return 1.0
    order = np.argsort(-codes[:, live], axis=0, kind="stable")[:k].T
    positive = np.take_along_axis(codes[:, live].T, order, axis=1) > 0
    return topics.max_hits_test(order, positive, is_topic, list(strata)).p


def detection_rates(
    x: np.ndarray,
    is_topic: np.ndarray,
    strata: Sequence[str],
    tests: dict[str, Callable[[np.ndarray, np.ndarray], bool]],
    *,
    strengths: Sequence[float] = STRENGTHS,
    directions: int = DIRECTIONS,
    seed: int = 0,
) -> dict[str, list[float]]:
    """For each test ((activations, labels) -> flagged?), the share of planted topics it flags at each
    strength; every test sees the same planted topics."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(np.asarray(strata) == s) for s in dict.fromkeys(strata)]
    rates: dict[str, list[float]] = {name: [] for name in tests}
    for strength in strengths:
        plants = []
        for _ in range(directions):
            labels = is_topic.copy()
            for members in groups:
                labels[members] = rng.permutation(is_topic[members])
            plants.append((planted(x, labels, strength, rng), labels))
        for name, flags in tests.items():
            rates[name].append(float(np.mean([flags(p, labels) for p, labels in plants])))
    return rates


def smallest_detected(strengths: Sequence[float], rates: Sequence[float]) -> float | None:
    """The smallest strength flagged at least ``DETECTED`` of the time (None: none is)."""
    return next((s for s, r in zip(strengths, rates, strict=True) if r >= DETECTED), None)


PLANTED_PERMUTATIONS = 200
"""The feature test's shuffles on each planted set: p resolves to 1/201, enough to call p < 0.05."""


Flags = Callable[[np.ndarray, np.ndarray], bool]


def feature_flags(encode: Callable[[np.ndarray], np.ndarray], strata: list[str]) -> Flags:
    """The feature test of one SAE (``encode``: rows -> codes) on (activations, labels): flagged?"""

    def features(x: np.ndarray, labels: np.ndarray) -> bool:
        return feature_test(encode(x), labels, strata, PLANTED_PERMUTATIONS).p < topics.ALPHA

    return features


def _sae_tests(encode: Callable[[np.ndarray], np.ndarray], strata: list[str], k: int) -> tuple[Flags, Flags]:
    """The feature test and the write-up's top-k test of one SAE, on (activations, labels)."""

    def top_k(x: np.ndarray, labels: np.ndarray) -> bool:
        return top_k_test(encode(x), labels, strata, k) < topics.ALPHA

    return feature_flags(encode, strata), top_k


def _topic(run: RunData, x: np.ndarray, topic: str, strengths: tuple[float, ...], directions: int) -> dict[str, Any]:
    is_topic = np.array([label == topic for label in prompt_topics(run)])
    strata, k = sample_types(run), run.config.analyze.top_k
    control = control_of(run)
    saes = {"trained": encoder(run.sae)} | ({"untrained": encoder(control.sae)} if control else {})
    probe = probe_test(x, is_topic, strata)
    features = {name: feature_test(encode(x), is_topic, strata) for name, encode in saes.items()}
    tests: dict[str, Flags] = {"probe": lambda p, labels: probe_auroc(p, labels) > probe.threshold}
    for name, encode in saes.items():
        tests[f"features, {name}"], tests[f"top {k}, {name}"] = _sae_tests(encode, strata, k)
    rates = detection_rates(x, is_topic, strata, tests, strengths=strengths, directions=directions)
    return {
        "prompts": int(is_topic.sum()),
        "probe": vars(probe),
        "features": {name: vars(test) for name, test in features.items()},
        "rates": rates,
        "detected": {name: smallest_detected(strengths, r) for name, r in rates.items()},
    }


def run_power(run_dir: Path, strengths: tuple[float, ...] = STRENGTHS, directions: int = DIRECTIONS) -> dict[str, Any]:
    """Each tested topic's probe, feature tests and detection rates; written to ``json``."""
    run = RunData(run_dir)
    x = sample_rows(run.activations)[0].numpy()  # the rows the analysis encodes, one per prompt
    result = {
        "strengths": list(strengths),
        "directions": directions,
        "detected_at": DETECTED,
        "topics": {topic: _topic(run, x, topic, strengths, directions) for topic in topics.TESTED},
    }
    artifacts.write_json(run_dir / layout.POWER_JSON, result)
    artifacts.record_addition(run_dir, "power", [run_dir / layout.POWER_JSON], {})
    return result
