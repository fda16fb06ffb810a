"""The named ablations beside a run: their rows, how each captures, and which feed the run's own sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT

from replication.__main__ import main
from replication.experiments import ablations
from replication.rundir.artifacts import sha256_file, verify_manifest
from replication.rundir.reader import RunData
from replication.stages import steps
from replication.stages.context import Context


def test_ablations_stage_on_a_run(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)

    generate = steps.capture

    def no_per_token_generation(*args: Any, **kwargs: Any) -> Any:
        assert args[3].positions != "all", "per_token generated again instead of feeding the run's sequences"
        return generate(*args, **kwargs)

    monkeypatch.setattr(steps, "capture", no_per_token_generation)
    assert main(["ablations", "--run", str(run), "--quiet"]) == 0
    rows = json.loads((run / "ablations.json").read_text())
    assert list(rows) == ["faithful", "l1_1e-4", "standard_sae", "chat_template", "per_token"]
    # The tiny tokenizer has no chat template: said so, not faked.
    assert "has no chat template" in rows["chat_template"]["not_applicable"]
    l1 = rows["l1_1e-4"]
    assert l1["overrides"] == {"train.l1_coefficient": 0.0001}
    assert "part3.l1_penalty" in l1["changed"]  # the run trained with another L1, so that claim flips
    assert l1["verdicts"]["part3.l1_penalty"] == "differs"
    assert sha256_file(run / "variants/l1_1e-4/train/sae.safetensors") != sha256_file(run / "train/sae.safetensors")
    standard = rows["standard_sae"]
    assert standard["verdicts"]["part3.decoder_relu"] == "differs"  # its decoder is linear
    assert standard["verdicts"]["part3.relu"] == "conforms"  # its encoder is still a ReLU
    assert RunData(run / "variants/standard_sae").config.train.batch_size == 64
    per_token = rows["per_token"]
    assert per_token["decode_shaped_fraction"] == 0.0  # a sample holds every fed position, never one row
    tokens = RunData(run / "variants/per_token")
    assert [r["token_ids"] for r in tokens.records] == [r["token_ids"] for r in RunData(run).records]
    # per_token changes only which positions are kept: it feeds the run's own sequences (no
    # generation, so no batch), its row says so, and the run's samples.json is its capture's input.
    assert tokens.config.capture.sequences_from == "../.."
    assert tokens.config.capture.batch_size == RunData(run).config.capture.batch_size
    assert "run's own generated sequences" in per_token["capture_sequences"]
    assert per_token["overrides"] == {"capture.positions": "all"}
    assert not {"capture_batch_size", "capture_batch_reason"} & (set(l1) | set(standard) | set(per_token))
    inputs = tokens.manifest["stages"]["capture"]["inputs"]
    assert inputs["../../capture/samples.json"] == sha256_file(run / "capture/samples.json")
    assert all(s.shape[1] == len(r["token_ids"]) - 1 for s, r in zip(tokens.activations, tokens.records, strict=True))
    for name in ("faithful", "l1_1e-4", "standard_sae", "per_token"):
        variant = RunData(run if name == "faithful" else run / "variants" / name)
        splice = json.loads((variant.root / "splice/splice.json").read_text())
        recovered = (splice["ce_zero"] - splice["ce_sae"]) / (splice["ce_zero"] - splice["ce_clean"])
        assert rows[name]["ce_loss_recovered"] == splice["ce_loss_recovered"] == pytest.approx(recovered, rel=1e-12)
    verify_manifest(run)  # the report's Ablations section: test_export renders a run with ablations.json
    assert main(["ablations", "--run", str(run), "--only", "dropout"]) == 2
    capsys.readouterr()


def test_a_sampling_model_recaptures_one_prompt_at_a_time(uninterrupted: Path, tmp_path: Path) -> None:
    """Batching is for greedy decoding only: where the model samples -- as the run's capture
    recorded, or as another model's generation config says -- an ablation captures as the run did
    (here one prompt at a time)."""
    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    reference = RunData(run)
    ctx = Context()
    assert ablations.capture_batching(reference, {"capture.positions": "all"}, ctx)[0] == ablations.RECAPTURE_BATCH_SIZE
    assert ablations.capture_batching(reference, {"capture.batch_size": 4}, ctx) == (
        4,
        "set by the ablation's overrides",
    )
    model = tmp_path / "tiny-sampling"
    shutil.copytree(REPO_ROOT / "fixtures" / "tiny", model)
    gen = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**gen, "do_sample": True}))
    size, reason = ablations.capture_batching(reference, {"model.path": str(model)}, ctx)
    assert size == 1 and "samples while generating" in reason
    info = json.loads((run / "capture/info.json").read_text())
    info["generation"]["do_sample"] = True
    (run / "capture/info.json").write_text(json.dumps(info))
    assert ablations.capture_batching(RunData(run), {"capture.chat_template": True}, ctx)[0] == 1


def test_only_a_per_token_variant_feeds_the_runs_sequences() -> None:
    assert ablations.feeds_run_sequences({"capture.positions": "all"})
    assert not ablations.feeds_run_sequences({"capture.positions": "last_call"})
    assert not ablations.feeds_run_sequences({"capture.positions": "all", "capture.chat_template": True})
    assert not ablations.feeds_run_sequences({"capture.positions": "all", "model.dtype": "bfloat16"})
    assert not ablations.feeds_run_sequences({"train.l1_coefficient": 0.0001})
