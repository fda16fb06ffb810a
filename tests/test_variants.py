"""Seed robustness: per-seed verdicts, the combined verdict, feature matching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from replication.__main__ import main
from replication.artifacts import sha256_file, verify_manifest
from replication.claims import evaluate_all, load_claims
from replication.config import REPO_ROOT
from replication.rundata import RunData
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
    # The tiny model decodes greedily: no sampling seed could change its capture.
    assert summary["sampling"]["applies"] is False and summary["sampling"]["seeds"] == [0]
    assert not list((run / "seeds").glob("sampling*"))
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
    assert list(rows) == ["faithful", "l1_1e-4", "standard_sae", "chat_template", "per_token"]
    # The tiny tokenizer has no chat template: said so, not faked.
    assert "has no chat template" in rows["chat_template"]["not_applicable"]
    l1 = rows["l1_1e-4"]
    assert l1["overrides"] == {"train.l1_coefficient": 0.0001}
    assert "part3.l1_penalty" in l1["changed"]  # the run trained with another L1, so that claim flips
    assert l1["verdicts"]["part3.l1_penalty"] == "not replicated"
    assert sha256_file(run / "variants/l1_1e-4/train/sae.safetensors") != sha256_file(run / "train/sae.safetensors")
    standard = rows["standard_sae"]
    assert standard["verdicts"]["part3.relu"] == "not replicated"  # its decoder is linear
    assert RunData(run / "variants/standard_sae").config.train.batch_size == 64
    per_token = rows["per_token"]
    assert per_token["decode_shaped_fraction"] == 0.0  # a sample holds every fed position, never one row
    tokens = RunData(run / "variants/per_token")
    assert [r["token_ids"] for r in tokens.records] == [r["token_ids"] for r in RunData(run).records]
    assert all(s.shape[1] == len(r["token_ids"]) - 1 for s, r in zip(tokens.samples, tokens.records, strict=True))
    for name in ("faithful", "l1_1e-4", "standard_sae", "per_token"):
        assert -10 < rows[name]["ce_loss_recovered"] < 10
        assert rows[name]["significant_topic_features"] >= 0
    verify_manifest(run)
    assert main(["report", "--run", str(run)]) == 0
    assert "## Ablations" in (run / "REPORT.md").read_text()
    assert main(["ablations", "--run", str(run), "--only", "dropout"]) == 2
    capsys.readouterr()


def test_sampling_seeds_capture_anew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where the model samples, each sampling seed is a new capture; its claims join the verdicts."""
    model = tmp_path / "tiny-sampling"
    shutil.copytree(REPO_ROOT / "fixtures" / "tiny", model)
    gen = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**gen, "do_sample": True, "temperature": 0.8}))
    profile = tmp_path / "sampling.yaml"
    profile.write_text(
        yaml.safe_dump({"model": {"source": "random_init", "name": "tiny-sampling", "path": str(model)}})
    )
    prompts = tmp_path / "prompts.txt"  # 20 prompts: enough to split, quick to sample thrice
    prompts.write_text(
        "".join(line + "\n" for line in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:20])
    )
    run = tmp_path / "run"
    assert main(["run", "--profile", str(profile), "--prompts", str(prompts), "--out", str(run), "--quiet"]) == 0
    assert main(["seeds", "--run", str(run), "--seeds", "2", "--sampling-seeds", "3", "--quiet"]) == 0
    summary = json.loads((run / "seeds.json").read_text())
    assert summary["sampling"]["applies"] is True and summary["sampling"]["seeds"] == [0, 1, 2]
    texts = {json.dumps(RunData(d).records) for d in (run, run / "seeds/sampling1", run / "seeds/sampling2")}
    assert len(texts) == 3  # three draws, three different captures
    for entry in summary["claims"].values():
        assert len(entry["sampling_verdicts"]) == len(entry["sampling_measured"]) == 2
        assert entry["combined"] == combine(entry["verdicts"] + entry["sampling_verdicts"])
    assert main(["seeds", "--run", str(run), "--sampling-seeds", "0"]) == 2
    capsys.readouterr()
