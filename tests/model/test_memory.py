"""The pre-flight memory check: the estimate against a hand computation, and the one-line refusal
when the model cannot fit (free memory injected, so nothing large is ever loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT
from transformers import AutoConfig

from replication.__main__ import main
from replication.config import load_profile
from replication.errors import ReplicationError
from replication.model import memory
from replication.model.memory import GIB, Workload

SCALED = REPO_ROOT / "fixtures" / "llama-3.1-8b-scaled"
SEED = REPO_ROOT / "fixtures" / "llama-3.1-8b"


def test_estimate_of_the_scaled_twin_is_the_hand_computation() -> None:
    """fixtures/llama-3.1-8b-scaled: d=128, 12 layers, 4 heads of 32, 1 KV head, MLP 448, vocabulary
    128256, untied embeddings; float32, 98 prompts, max_length 50, batch 4."""
    d, layers, head_dim, kv_heads, mlp, vocab = 128, 12, 32, 1, 448, 128256
    per_layer = d * d + 2 * d * kv_heads * head_dim + d * d + 3 * d * mlp + 2 * d  # q, k+v, o, MLP, norms
    params = 2 * vocab * d + layers * per_layer + d  # embeddings, LM head, layers, final norm
    workload = Workload(max_length=50, batch_size=4, rows=98 * 50)
    estimate = memory.estimate(AutoConfig.from_pretrained(SCALED), "float32", workload)
    assert estimate.weights == params * 4
    assert estimate.kv_cache == layers * 2 * kv_heads * head_dim * 50 * 4 * 4
    assert estimate.activations == 98 * 50 * d * 4
    assert estimate.total == params * 4 + layers * 2 * kv_heads * head_dim * 50 * 4 * 4 + 98 * 50 * d * 4
    assert memory.estimate(AutoConfig.from_pretrained(SCALED), "bfloat16", workload).weights == params * 2


def test_workload_of_a_run_counts_every_position_of_every_prompt() -> None:
    cfg = load_profile("seed", {"capture.batch_size": 8})
    assert Workload.of(cfg, 98) == Workload(max_length=50, batch_size=8, rows=98 * 50)


def test_seed_in_float32_does_not_fit_16_gib_and_the_line_names_the_options() -> None:
    cfg = load_profile("seed")
    config = AutoConfig.from_pretrained(SEED)
    workload = Workload.of(cfg, 98)
    with pytest.raises(ReplicationError) as info:
        memory.check(config, cfg.model, torch.device("cpu"), workload, free=(16 * GIB, "the CPU"))
    message = str(info.value)
    assert "\n" not in message
    # 8.03e9 parameters x 4 bytes = 29.9 GiB, the weights alone.
    assert message.startswith("Llama-3.1-8B-Instruct in float32 needs about 30.0 GiB (weights 29.9, ")
    assert "but the CPU has 16.0 GiB free; options: --model.dtype=bfloat16, --model.device_map=auto" in message
    bf16 = cfg.model.replace(dtype="bfloat16")
    fits = memory.check(config, bf16, torch.device("cpu"), workload, free=(24 * GIB, "the CPU"))
    assert 14.9 * GIB < fits.weights < 15 * GIB and fits.total < 24 * GIB
    mapped = bf16.replace(device_map="auto")
    with pytest.raises(ReplicationError, match=r"has 8\.0 GiB free; a machine with more memory is needed$"):
        memory.check(config, mapped, torch.device("cpu"), workload, free=(8 * GIB, "the CPU and 1 GPU(s)"))


def test_free_memory_of_the_cpu_is_what_the_system_reports() -> None:
    free, where = memory.free_memory(torch.device("cpu"), None)
    assert where == "the CPU" and 0 < free <= memory.psutil.virtual_memory().total


def test_a_run_that_cannot_fit_stops_before_loading_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny profile against 1 MiB free: exit 2, one line, no run directory."""
    monkeypatch.setattr(memory, "free_memory", lambda device, device_map: (2**20, "the CPU"))
    out = tmp_path / "run"
    assert main(["capture", "--profile", "tiny", "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny-random-llama in float32 needs about ")
    assert "but the CPU has 0.0 GiB free" in lines[0]
    assert not out.exists()


def test_kv_cache_and_activations_count_against_the_free_memory() -> None:
    cfg = load_profile("seed", {"model.path": str(SCALED)})
    config = AutoConfig.from_pretrained(SCALED)
    need = memory.estimate(config, "float32", Workload.of(cfg, 98))
    assert memory.check(config, cfg.model, torch.device("cpu"), Workload.of(cfg, 98), free=(need.total, "x")) == need
    with pytest.raises(ReplicationError, match="needs about"):
        memory.check(config, cfg.model, torch.device("cpu"), Workload.of(cfg, 98), free=(need.total - 1, "x"))
