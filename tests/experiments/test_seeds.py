"""Seed robustness: per-seed verdicts, the combined verdict, feature matching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import REPO_ROOT
from safetensors.numpy import load_file

from replication.__main__ import main
from replication.evaluation.claims import load_claims
from replication.evaluation.metrics import METRICS
from replication.evaluation.verdicts import evaluate
from replication.experiments import seeds
from replication.rundir import layout
from replication.rundir.artifacts import sha256_file, verify_manifest
from replication.rundir.reader import RunData, control_of
from replication.sae.autoencoder import SparseAutoencoder
from replication.stages.context import Context


def test_seeds_stage_on_a_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["seeds", "--run", str(run), "--seeds", "3", "--quiet"]) == 0
    summary = json.loads((run / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    # The tiny model decodes greedily: no sampling seed could change its capture.
    assert summary["sampling"]["applies"] is False and summary["sampling"]["seeds"] == [0]
    assert not list((run / "seeds").glob("sampling*"))
    # Seed 0 judged as each seed is: with its control, each p-value counted at alpha / 3 (Bonferroni).
    reference = RunData(run)
    seed0 = {c.id: evaluate(c, reference, control_of(reference), 3).verdict for c in load_claims()}
    assert set(summary["claims"]) == set(seed0)
    for cid, entry in summary["claims"].items():
        assert len(entry["verdicts"]) == len(entry["measured"]) == 3
        outcomes = set(zip(entry["verdicts"], entry["whys"], strict=True))
        if len(outcomes) == 1:  # seeds that agree combine to their verdict (the rules: test_verdicts)
            assert {(entry["combined"], entry["combined_why"])} == outcomes
        assert entry["verdicts"][0] == seed0[cid]
    seed_dirs = [run, run / "seeds" / "seed1", run / "seeds" / "seed2"]
    # Other seeds share the capture (hard links: same bytes) and train different weights.
    for k in (1, 2):
        seeded = run / "seeds" / f"seed{k}"
        assert sha256_file(seeded / "capture/activations.safetensors") == sha256_file(
            run / "capture/activations.safetensors"
        )
        assert sha256_file(seeded / "train/sae.safetensors") != sha256_file(run / "train/sae.safetensors")
        assert not (seeded / "splice").exists()  # no claim reads a splice test (below)
    # Live: a code dimension non-zero on some encoded sample of seed 0's run.
    codes = load_file(str(run / "analyze/codes.safetensors"))["codes"]
    live = np.flatnonzero((codes > 0).any(axis=0))
    assert summary["features"]["live"] == len(live) > 0
    # Stable: a live feature of seed 0 whose decoder direction has cosine >= 0.9 with some
    # direction of every other seed, by a plain cosine over the decoder weights read from the files.
    decoders = [load_file(str(d / "train/sae.safetensors"))["decoder.weight"].astype(np.float64) for d in seed_dirs]
    best = []
    for other in decoders[1:]:
        row = []
        for j in live:
            ref = decoders[0][:, j]
            norms = [np.linalg.norm(ref) * np.linalg.norm(column) for column in other.T]
            row.append(max(ref @ column / norm for column, norm in zip(other.T, norms, strict=True)))
        best.append(row)
    best_array = np.array(best)
    assert summary["features"]["stable"] == int((best_array >= 0.9).all(axis=0).sum())
    np.testing.assert_allclose(summary["features"]["median_best_cosine"], np.median(best_array, axis=1), rtol=1e-5)
    verify_manifest(run)  # seeds.json is recorded
    assert main(["report", "--run", str(run)]) == 0
    assert "## Seed robustness (3 SAE seeds)" in (run / "REPORT.md").read_text()
    capsys.readouterr()


def test_no_claim_reads_the_stages_a_seed_leaves_out() -> None:
    read = {METRICS[m].evidence for c in load_claims() for m in [c.metric, *(a.metric for a in c.alternatives)]}
    left_out = {layout.SPLICE}
    assert set(seeds.UNREAD) == {"splice"} and not read & left_out


def test_stable_features_are_the_planted_shared_directions(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeds 1 and 2 stand in as seed 0's SAE with its decoder columns shuffled and rescaled, and
    some live directions replaced by random ones (seed 1) or negated (seed 2): exactly the live
    features that neither touched are stable."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    reference = RunData(run)
    live = [int(j) for j in np.flatnonzero(reference.codes.max(axis=0) > 0)]
    decoder = reference.sae.decoder.weight.detach().numpy().astype(np.float64)
    unit = decoder / np.linalg.norm(decoder, axis=0)
    similar = unit.T @ unit - 2 * np.eye(unit.shape[1])
    assert similar.max() < 0.9, "seed 0 has near-duplicate directions: the planted count would not hold"
    replaced, negated = live[:6], live[4:9]  # live[4] and live[5] are touched in both seeds
    rng = np.random.default_rng(0)

    def fake_variant_run(
        directory: Path,
        run_dir: Path,
        overrides: dict[str, Any],
        ctx: Context,
        progress: bool,
        without: tuple[str, ...],
    ) -> Path:
        shutil.copytree(run_dir, directory, ignore=shutil.ignore_patterns("seeds"))
        planted = decoder.copy()
        if overrides == {"train.seed": 1}:
            planted[:, replaced] = rng.normal(size=(planted.shape[0], len(replaced)))
        else:
            planted[:, negated] *= -1.0
        order = rng.permutation(planted.shape[1])
        sae = SparseAutoencoder.load(directory / "train")
        with torch.no_grad():
            sae.decoder.weight.copy_(torch.from_numpy(planted[:, order] * 3.0).float())
        sae.save(directory / "train")
        return directory

    monkeypatch.setattr(seeds, "variant_run", fake_variant_run)
    summary = seeds.run_seeds(run, load_claims(), 3)
    assert summary["features"]["live"] == len(live)
    assert summary["features"]["stable"] == len(live) - 9  # live[0:9] touched in one seed or the other
    # seed 2 only negated 5 of the live directions: its median best cosine is still 1
    assert summary["features"]["median_best_cosine"][1] == pytest.approx(1.0, abs=1e-6)


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
    prompts = tmp_path / "prompts.txt"  # 10 prompts of at most 28 tokens: enough to split, quick to sample thrice
    prompts.write_text(
        "".join(line + "\n" for line in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:10])
    )
    run = tmp_path / "run"
    short = ["--capture.max_length=30", "--prompts", str(prompts)]  # 102 sampled tokens a capture
    assert main(["run", "--profile", str(profile), *short, "--out", str(run), "--quiet"]) == 0
    assert main(["seeds", "--run", str(run), "--seeds", "2", "--sampling-seeds", "3", "--quiet"]) == 0
    summary = json.loads((run / "seeds.json").read_text())
    assert summary["sampling"]["applies"] is True and summary["sampling"]["seeds"] == [0, 1, 2]
    texts = {json.dumps(RunData(d).records) for d in (run, run / "seeds/sampling1", run / "seeds/sampling2")}
    assert len(texts) == 3  # three draws, three different captures
    for entry in summary["claims"].values():
        assert len(entry["sampling_verdicts"]) == len(entry["sampling_measured"]) == 2
        every = entry["verdicts"] + entry["sampling_verdicts"]  # the sampled captures join the SAE seeds
        if len(set(every)) == 1:
            assert entry["combined"] == every[0]
        else:
            assert entry["combined"] in {*every, "no evidence"} - {"replicated"}
    assert main(["seeds", "--run", str(run), "--sampling-seeds", "0"]) == 2
    capsys.readouterr()
