"""The stages as file-to-file steps of one run directory: capture -> train -> analyze -> splice.

Each stage reads only the files of the stages before it and records its own files, with their
sha256, in the run's manifest. Layout of a run directory::

    config.yaml                      the resolved config of the latest stage
    manifest.json                    config + hash, environment, per-stage facts, sha256 of files
    capture/activations.safetensors  sample_000 ... one (1, T, d) float32 tensor per prompt
    capture/samples.json             per sample: prompt, text, token counts, prefill/decode, shape
    capture/activations_data.json    the original's format: [{prompt, generated_text, activations}]
    capture/info.json                model, weights, depth, width, decoding rule, device, dtype
    capture/prompts.txt              the corpus as used
    train/sae.safetensors            the best (reloaded) SAE
    train/history.json               one row per epoch
    train/last_codes.safetensors     codes of the last epoch's training pass (the PCA's input)
    train/summary.json               rows, best and last epoch
    analyze/codes.safetensors        one code row per sample (N, d_hidden)
    analyze/top_prompts.json         top-k prompts per code dimension, and the row rule
    analyze/pca.json                 2-D PCA of the last epoch's training codes
    splice/splice.json               CE clean / with the SAE spliced in / zero-ablated (splice.py)

The later steps add seeds.json, ablations.json (replication.variants), verdicts.json, figures/ and
REPORT.md (replication.report), each recorded in the manifest too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from replication import analysis, artifacts
from replication.capture import (
    capture,
    decoder_layer,
    feed_positions,
    generation_settings,
    num_layers,
    read_prompts,
)
from replication.config import ModelConfig, RunConfig
from replication.errors import ReplicationError
from replication.models import LoadedModel, load_model, resolve_device
from replication.sae import SparseAutoencoder
from replication.splice import splice_test
from replication.train import positional_split, positional_split_rows, stack_samples, train_sae

STAGES = ("capture", "train", "analyze", "splice")
_LOADED: dict[tuple[ModelConfig, str], LoadedModel] = {}


def cached_model(cfg: ModelConfig, device: torch.device) -> LoadedModel:
    """The model, loaded once per process: capture and the splice test of one run (and of its
    variants) share it. Only the latest model is kept."""
    key = (cfg, str(device))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_model(cfg, device)
    return _LOADED[key]


def sample_key(index: int) -> str:
    return f"sample_{index:03d}"


def load_samples(run_dir: Path) -> list[torch.Tensor]:
    """The captured (1, T, d) samples in corpus order."""
    tensors = artifacts.load_tensors(run_dir / "capture" / "activations.safetensors")
    return [tensors[sample_key(i)] for i in range(len(tensors))]


def _capture(cfg: RunConfig, run_dir: Path, progress: bool) -> tuple[list[Path], dict[str, Any]]:
    started = time.perf_counter()
    prompts = read_prompts(cfg.prompts_path())
    device = resolve_device(cfg.capture.device)
    loaded = cached_model(cfg.model, device)
    decoder_layer(loaded.model, cfg.capture.layer)
    loaded_at = time.perf_counter()
    samples = capture(loaded.model, loaded.tokenizer, prompts, cfg.capture, progress)
    generate_s = time.perf_counter() - loaded_at
    if cfg.capture.positions == "all":
        feed_positions(loaded.model, samples, cfg.capture.layer, progress)
    out = run_dir / "capture"
    layer_meta = {"layer": cfg.capture.layer, "model": cfg.model.name}
    tensors = {sample_key(i): s.activation for i, s in enumerate(samples)}
    artifacts.save_tensors(out / "activations.safetensors", tensors, layer_meta)
    artifacts.write_json(out / "samples.json", [s.record(i) for i, s in enumerate(samples)])
    artifacts.write_json(
        out / "activations_data.json",
        [
            {"prompt": s.prompt, "generated_text": s.generated_text, "activations": s.activation.tolist()}
            for s in samples
        ],
    )
    info = {
        "model": cfg.model.name,
        "weights": loaded.weights,
        "n_layers": num_layers(loaded.model),
        "d_model": int(samples[0].activation.shape[-1]),
        "layer": cfg.capture.layer,
        "hook": f"model.layers.{cfg.capture.layer}",
        "generation": generation_settings(loaded.model),
        "max_length": cfg.capture.max_length,
        "chat_template": cfg.capture.chat_template,
        "positions": cfg.capture.positions,
        "sampling_seed": cfg.capture.sampling_seed,
        "device": str(device),
        "dtype": cfg.model.dtype,
    }
    artifacts.write_json(out / "info.json", info)
    artifacts.write_text(out / "prompts.txt", "".join(p + "\n" for p in prompts))
    names = ("activations.safetensors", "samples.json", "activations_data.json", "info.json", "prompts.txt")
    files = [out / n for n in names]
    return files, {
        "load_s": loaded_at - started,
        "generate_s": generate_s,
        "batch_size": cfg.capture.batch_size,
        "new_tokens": sum(s.new_tokens for s in samples),
        "forward_calls": sum(s.hook_calls for s in samples),
        "tokens_per_s": sum(s.new_tokens for s in samples) / generate_s,
        "weight_bytes": sum(p.numel() * p.element_size() for p in loaded.model.parameters()),
        "device": str(device),
        "dtype": cfg.model.dtype,
        "seed": cfg.capture.sampling_seed,
    }


def _train(cfg: RunConfig, run_dir: Path, progress: bool) -> tuple[list[Path], dict[str, Any]]:
    samples = load_samples(run_dir)
    check_finite(samples)
    if cfg.capture.positions == "all":  # every row is a real token: no padding
        train_x, val_x = positional_split_rows(samples, cfg.train.train_fraction)
        rows_per_sample = None
    else:
        stacked = stack_samples(samples)
        train_x, val_x = positional_split(stacked, cfg.train.train_fraction)
        rows_per_sample = int(stacked.shape[1])
    result = train_sae(train_x, val_x, cfg.train, progress)
    out = run_dir / "train"
    meta = {
        "d_in": result.sae.d_in,
        "d_hidden": result.sae.d_hidden,
        "decoder_activation": cfg.train.decoder_activation,
    }
    artifacts.save_tensors(out / "sae.safetensors", result.sae.state_dict(), meta)
    artifacts.save_tensors(out / "last_codes.safetensors", {"codes": result.last_codes}, {})
    artifacts.write_json(out / "history.json", result.history)
    summary = {
        "samples": len(samples),
        "rows_per_sample": rows_per_sample,
        "train_rows": int(train_x.shape[0]),
        "val_rows": int(val_x.shape[0]),
        "best_epoch": result.best_epoch,
        "last_epoch": len(result.history),
    }
    artifacts.write_json(out / "summary.json", summary)
    files = [out / n for n in ("sae.safetensors", "last_codes.safetensors", "history.json", "summary.json")]
    return files, {"device": "cpu", "dtype": "float32", "seed": cfg.train.seed}


def load_sae(run_dir: Path, cfg: RunConfig) -> SparseAutoencoder:
    state = artifacts.load_tensors(run_dir / "train" / "sae.safetensors")
    d_hidden, d_in = state["encoder.weight"].shape
    sae = SparseAutoencoder(d_in, d_hidden, cfg.train.decoder_activation)
    sae.load_state_dict(state)
    return sae.eval()


def _analyze(cfg: RunConfig, run_dir: Path, progress: bool) -> tuple[list[Path], dict[str, Any]]:
    samples = load_samples(run_dir)
    records = artifacts.read_json(run_dir / "capture" / "samples.json")
    if len(records) != len(samples):
        raise ReplicationError(f"{run_dir}/capture: samples.json and activations disagree in length")
    prompts = [r["prompt"] for r in records]
    x, rows = analysis.sample_rows(samples)
    codes = analysis.encode(load_sae(run_dir, cfg), x)
    last = artifacts.load_tensors(run_dir / "train" / "last_codes.safetensors")["codes"].numpy()
    out = run_dir / "analyze"
    artifacts.save_tensors(out / "codes.safetensors", {"codes": torch.from_numpy(codes)}, {})
    top = {
        "row_rule": analysis.ROW_RULE,
        "encoded_rows": rows,
        "prefill_samples": [r["index"] for r in records if r["source"] == "prefill"],
        "dimensions": analysis.top_activating(codes, prompts, cfg.analyze.top_k),
    }
    artifacts.write_json(out / "top_prompts.json", top)
    artifacts.write_json(out / "pca.json", {"source": "last training epoch's codes", **analysis.pca_2d(last)})
    files = [out / n for n in ("codes.safetensors", "top_prompts.json", "pca.json")]
    return files, {}


def _splice(cfg: RunConfig, run_dir: Path, progress: bool) -> tuple[list[Path], dict[str, Any]]:
    records = artifacts.read_json(run_dir / "capture" / "samples.json")
    device = resolve_device(cfg.capture.device)
    loaded = cached_model(cfg.model, device)
    result = splice_test(loaded.model, load_sae(run_dir, cfg), [r["token_ids"] for r in records], cfg.capture.layer)
    out = run_dir / "splice" / "splice.json"
    artifacts.write_json(out, {"layer": cfg.capture.layer, "hook": f"model.layers.{cfg.capture.layer}", **result})
    return [out], {"device": str(device), "dtype": cfg.model.dtype}


def stage_outputs(run_dir: Path) -> list[str]:
    """The files the capture, train, analyze and splice stages wrote, as the manifest records them."""
    stages = artifacts.read_manifest(run_dir).get("stages", {})
    return [name for stage in STAGES for name in stages.get(stage, {}).get("outputs", [])]


def check_finite(samples: list[torch.Tensor]) -> None:
    """NaN or inf in a captured sample is named before any training."""
    for index, sample in enumerate(samples):
        if not torch.isfinite(sample).all():
            raise ReplicationError(f"capture/activations.safetensors: {sample_key(index)} holds NaN or inf")


@dataclass(frozen=True)
class Stage:
    """A stage: the config sections its output depends on, the run files it reads, its body."""

    name: str
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    body: Callable[[RunConfig, Path, bool], tuple[list[Path], dict[str, Any]]]


STAGE_SPECS = {
    "capture": Stage("capture", ("model", "capture"), (), _capture),
    "train": Stage("train", ("train",), ("capture/activations.safetensors",), _train),
    "analyze": Stage(
        "analyze",
        ("train", "analyze"),
        (
            "capture/activations.safetensors",
            "capture/samples.json",
            "train/sae.safetensors",
            "train/last_codes.safetensors",
        ),
        _analyze,
    ),
    "splice": Stage(
        "splice",
        ("model", "capture", "train"),
        ("capture/samples.json", "train/sae.safetensors"),
        _splice,
    ),
}


def stage_inputs(stage: Stage, cfg: RunConfig, run_dir: Path) -> dict[str, str]:
    """sha256 of everything the stage reads: its run files, and for capture the corpus."""
    if stage.name == "capture":
        corpus = "".join(p + "\n" for p in read_prompts(cfg.prompts_path()))
        return {"prompts": hashlib.sha256(corpus.encode()).hexdigest()}
    missing = [name for name in stage.inputs if not (run_dir / name).is_file()]
    if missing:
        raise ReplicationError(f"{run_dir / missing[0]} is missing: run the stage that writes it first")
    return {name: artifacts.sha256_file(run_dir / name) for name in stage.inputs}


def run_stage(name: str, cfg: RunConfig, run_dir: Path, progress: bool = True, force: bool = False) -> bool:
    """Run one stage, or skip it when its config, inputs and outputs are unchanged; True if it ran.

    Files are written atomically and the manifest last: a run killed at any moment leaves the
    previous complete state, and the same command finishes it.
    """
    stage = STAGE_SPECS[name]
    key = cfg.section_hash(stage.sections)
    inputs = stage_inputs(stage, cfg, run_dir)
    if not force and artifacts.stage_is_current(run_dir, name, key, inputs):
        return False
    started = time.perf_counter()
    artifacts.reset_peak_memory()
    files, info = stage.body(cfg, run_dir, progress)
    config = cfg.to_dict()
    artifacts.write_config(run_dir, config)
    record = {
        "stage_hash": key,
        "inputs": inputs,
        "outputs": [str(f.relative_to(run_dir)) for f in files],
        "wall_s": time.perf_counter() - started,
        **artifacts.peak_memory(),
        **info,
    }
    artifacts.record_stage(run_dir, name, files=files, config=config, config_hash=cfg.hash(), info=record)
    return True
