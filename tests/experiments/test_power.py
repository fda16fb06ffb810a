"""The power step on the tiny run: power.json, recorded in the manifest, with a row per tested topic."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from replication.evaluation.metrics.parts12 import prompt_topics
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
