"""Part 4 with power: the AUROC feature test, the probe and the planting on hand-built data, and the
power step on the tiny run (power.json, recorded in the manifest, a row per tested topic)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from replication.evaluation.metrics.parts12 import prompt_topics
from replication.experiments import power
from replication.experiments.power import run_power
from replication.rundir.artifacts import verify_manifest
from replication.rundir.reader import RunData


def test_power_on_the_tiny_run(tiny_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run")
    result = run_power(run, strengths=(0.0, 1.0), directions=2)
    assert json.loads((run / "power.json").read_text()) == result
    assert "power.json" in verify_manifest(run)["files"]
    assert set(result["topics"]) == {"javascript_web", "testing", "oop"}
    for topic in result["topics"].values():
        assert set(topic["features"]) == {"trained", "untrained"}
        assert set(topic["rates"]) == {
            "probe",
            "features, trained",
            "top 5, trained",
            "features, untrained",
            "top 5, untrained",
        }
        assert all(len(rates) == 2 for rates in topic["rates"].values())
        # A planted direction as long as the median row: every test flags both planted topics, and the
        # smallest strength detected is that one or none planted (0: chance flagged a real topic's set).
        assert all(rates[1] == 1.0 for rates in topic["rates"].values())
        assert all(s in (0.0, 1.0) for s in topic["detected"].values())
        # The trained and the untrained SAE are two SAEs: their best features are tested apart.
        assert topic["features"]["trained"] != topic["features"]["untrained"]
    counts = Counter(prompt_topics(RunData(run)))
    assert {topic: row["prompts"] for topic, row in result["topics"].items()} == {
        t: counts[t] for t in result["topics"]
    }


def test_auroc_by_hand() -> None:
    labels = np.array([[0, 0, 1, 1]])
    # Every topic score above every other: 1; every one below: 0; all tied: each pair counts half.
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(power.auroc_matrix(scores, labels)[:, 0], [1.0, 0.0, 0.5])
    # Topic scores 3, 2 against others 1, 3: 3 > 1, 3 = 3 (half), 2 > 1, 2 < 3: (1 + 0.5 + 1 + 0) / 4.
    np.testing.assert_allclose(power.auroc_matrix(np.array([[1.0, 3.0, 3.0, 2.0]]), labels), [[2.5 / 4]])


def test_a_feature_that_is_the_topic_is_found_and_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    is_topic = np.zeros(40, dtype=bool)
    is_topic[:8] = True
    strata = ["decode"] * 40
    noise = rng.exponential(size=(40, 30))
    found = power.feature_test(np.column_stack([noise, is_topic * 5.0]), is_topic, strata)
    # The last feature ranks the 8 topic prompts above the 32 others: AUROC 1, and no shuffle of 1000
    # gives 1 (each does with probability about 30 / C(40, 8)): p = 1 / 1001.
    assert (found.auroc, found.feature, found.p) == (1.0, 30, pytest.approx(1 / 1001))
    assert power.feature_test(noise, is_topic, strata).p > 0.05
    dead = power.feature_test(np.zeros((40, 3)), is_topic, strata)
    assert (dead.feature, dead.p) == (None, 1.0)


def test_the_probe_finds_a_direction_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 20))
    is_topic = np.arange(60) < 15
    assert power.probe_auroc(x, is_topic) < 0.8
    x[is_topic, 0] += 4.0  # four standard deviations along one axis: the best classifier's AUROC is 0.998
    assert power.probe_auroc(x, is_topic) > 0.9  # measured 0.945: 48 rows a fold to fit 20 weights


def test_planting_adds_the_strength_to_the_topic_rows_only() -> None:
    x = np.ones((4, 3)) * np.array([[1.0], [2.0], [3.0], [4.0]])  # row norms sqrt(3) x 1..4: median 2.5 sqrt(3)
    is_topic = np.array([True, False, True, False])
    moved = power.planted(x, is_topic, 0.2, np.random.default_rng(0)) - x
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), [0.2 * 2.5 * np.sqrt(3), 0, 0.2 * 2.5 * np.sqrt(3), 0])
    np.testing.assert_allclose(moved[0], moved[2])  # one direction for the whole topic


def test_planted_topics_keep_the_topics_size_and_sample_types() -> None:
    is_topic = np.array([True, True, False, False, True, False, False, False])
    strata = ["prefill"] * 4 + ["decode"] * 4
    seen = []

    def record(x: np.ndarray, labels: np.ndarray) -> bool:
        seen.append(labels.copy())
        return bool(labels[0])

    rates = power.detection_rates(np.ones((8, 2)), is_topic, strata, {"t": record}, strengths=(0.0, 1.0), directions=50)
    assert len(seen) == 100
    # The share of planted topics flagged per strength, here whether the set holds row 0 (the stub's answer).
    assert rates["t"] == [np.mean([labels[0] for labels in seen[:50]]), np.mean([labels[0] for labels in seen[50:]])]
    assert all(labels[:4].sum() == 2 and labels[4:].sum() == 1 for labels in seen)
    assert 0 < sum(labels[0] for labels in seen) < 100  # the labels move: not the real topic each time


def test_the_smallest_strength_detected() -> None:
    assert power.smallest_detected((0.0, 0.1, 0.2), [0.0, 0.7, 0.8]) == 0.2
    assert power.smallest_detected((0.0, 0.1), [0.1, 0.5]) is None
