"""Seed robustness: per-seed verdicts, the combined verdict, feature matching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from replication.__main__ import main
from replication.artifacts import sha256_file, verify_manifest
from replication.claims import evaluate_all, load_claims
from replication.metrics import RunData
from replication.variants import best_cosines, combine


def test_combined_verdict() -> None:
    assert combine(["replicated", "replicated"]) == "replicated"
    assert combine(["not replicated"] * 3) == "not replicated"
    assert combine(["replicated", "not replicated", "replicated"]) == "inconclusive"


def test_best_cosines_find_permuted_and_scaled_directions() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(16, 5))
    other = np.concatenate([reference[:, ::-1] * 3.0, rng.normal(size=(16, 4))], axis=1)
    np.testing.assert_allclose(best_cosines(reference, other), np.ones(5), rtol=1e-12)
    assert (best_cosines(reference, rng.normal(size=(16, 5))) < 0.99).all()


def test_seeds_stage_on_a_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["seeds", "--run", str(run), "--seeds", "3", "--quiet"]) == 0
    summary = json.loads((run / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    seed0 = {r.claim.id: r.verdict for r in evaluate_all(load_claims(), RunData(run))}
    assert set(summary["claims"]) == set(seed0)
    for cid, entry in summary["claims"].items():
        assert len(entry["verdicts"]) == len(entry["measured"]) == 3
        assert entry["combined"] == combine(entry["verdicts"])
        assert entry["verdicts"][0] == seed0[cid]
    # Other seeds share the capture (hard links: same bytes) and train different weights.
    for k in (1, 2):
        seeded = run / "seeds" / f"seed{k}"
        assert sha256_file(seeded / "capture/activations.safetensors") == sha256_file(
            run / "capture/activations.safetensors"
        )
        assert sha256_file(seeded / "train/sae.safetensors") != sha256_file(run / "train/sae.safetensors")
    assert 0 <= summary["features"]["stable"] <= summary["features"]["live"]
    verify_manifest(run)  # seeds.json is recorded
    assert main(["report", "--run", str(run)]) == 0
    assert "## Seed robustness (3 SAE seeds)" in (run / "REPORT.md").read_text()
    capsys.readouterr()


def test_ablations_stage_on_a_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["ablations", "--run", str(run), "--quiet"]) == 0
    rows = json.loads((run / "ablations.json").read_text())
    assert list(rows) == ["faithful", "l1_1e-4", "chat_template"]
    # The tiny tokenizer has no chat template: said so, not faked.
    assert "has no chat template" in rows["chat_template"]["not_applicable"]
    l1 = rows["l1_1e-4"]
    assert l1["overrides"] == {"train.l1_coefficient": 0.0001}
    assert "part3.l1_penalty" in l1["changed"]  # the run trained with another L1, so that claim flips
    assert l1["verdicts"]["part3.l1_penalty"] == "not replicated"
    assert sha256_file(run / "variants/l1_1e-4/train/sae.safetensors") != sha256_file(run / "train/sae.safetensors")
    verify_manifest(run)
    assert main(["report", "--run", str(run)]) == 0
    assert "## Ablations" in (run / "REPORT.md").read_text()
    assert main(["ablations", "--run", str(run), "--only", "dropout"]) == 2
    capsys.readouterr()
