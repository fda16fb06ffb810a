"""The stages' bodies: what capture, train, analyze, splice and control each read and write.

Each reads through a ``RunData`` (which notes the stage's inputs) and returns the names of the files it
wrote and the facts for the manifest; ``stages.runner`` decides when a stage runs and records it.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from replication.config import ModelConfig, RunConfig
from replication.errors import ReplicationError
from replication.model.hooks import counted_calls, decoder_layer, hook_point, input_device, num_layers
from replication.model.loading import LoadedModel, resolve_device
from replication.model.memory import Workload
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.data import (
    ROW_RULE,
    positional_split,
    positional_split_rows,
    sample_rows,
    shuffle_dimensions,
    stack_samples,
)
from replication.sae.training import TrainResult, train_sae
from replication.stages import analyze
from replication.stages.capture import capture, generation_settings, read_prompts, samples_of
from replication.stages.context import Context
from replication.stages.splice import captured_spans, scorable, splice_result


def placement(cfg: ModelConfig, loaded: LoadedModel, device: torch.device) -> str:
    """Where the model runs: ``device``, or under a device map the devices accelerate chose."""
    if cfg.device_map is None:
        return str(device)
    devices = getattr(loaded.model, "hf_device_map", None) or {"": input_device(loaded.model)}
    names = {f"cuda:{d}" if isinstance(d, int) else str(d) for d in devices.values()}
    return f"device_map={cfg.device_map}: {', '.join(sorted(names))}"


def corpus_digest(prompts: list[str]) -> str:
    """sha256 of the corpus as the capture reads it: one prompt a line."""
    return hashlib.sha256("".join(p + "\n" for p in prompts).encode()).hexdigest()


def capture_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    started = time.perf_counter()
    prompts = read_prompts(cfg.prompts_path())
    run.reads[layout.CORPUS] = corpus_digest(prompts)
    device = resolve_device(cfg.capture.device)
    loaded = ctx.model(cfg.model, device, Workload.of(cfg, len(prompts)))
    layer = decoder_layer(loaded.model, cfg.capture.layer)
    loaded_at = time.perf_counter()
    if cfg.capture.sequences_from is None:
        with counted_calls(layer) as passes:  # one per forward pass, over all the rows of a batch
            samples = capture(loaded.model, loaded.tokenizer, prompts, cfg.capture, progress)
    else:
        samples = samples_of(sequences_source(cfg, run, prompts))
    generate_s = time.perf_counter() - loaded_at
    if cfg.capture.positions == "all":  # every position the model fed itself, one row each
        fed = ctx.fed_states(cfg, device, [s.token_ids for s in samples])
        for sample, states in zip(samples, fed, strict=True):
            sample.activation = states[None]
    root = run.root
    tensors = {layout.sample_key(i): s.activation for i, s in enumerate(samples)}
    layer_meta = {"layer": cfg.capture.layer, "model": cfg.model.name}
    artifacts.save_tensors(root / layout.ACTIVATIONS, tensors, layer_meta)
    records = [s.record(i) for i, s in enumerate(samples)]
    artifacts.write_json(root / layout.SAMPLES, records)
    files = list(layout.CAPTURE_FILES)
    if cfg.capture.positions == "last_call":  # the original's own format, of the original's samples
        original = artifacts.original_format(records, [s.activation for s in samples])
        artifacts.write_json(root / layout.ORIGINAL_FORMAT, original)
    else:  # every fed position as indented JSON: about 0.5 GB at the seed's scale, in no format of the original's
        files.remove(layout.ORIGINAL_FORMAT)
        (root / layout.ORIGINAL_FORMAT).unlink(missing_ok=True)  # an earlier capture's, in this directory
    info = {
        "model": cfg.model.name,
        "weights": loaded.weights,
        "n_layers": num_layers(loaded.model),
        "d_model": int(samples[0].activation.shape[-1]),
        "layer": cfg.capture.layer,
        "hook": hook_point(cfg.capture.layer),
        "generation": generation_settings(loaded.model),
        "max_length": cfg.capture.max_length,
        "chat_template": cfg.capture.chat_template,
        "positions": cfg.capture.positions,
        "sampling_seed": cfg.capture.sampling_seed,
        "device": placement(cfg.model, loaded, device),
        "dtype": cfg.model.dtype,
    }
    artifacts.write_json(root / layout.CAPTURE_INFO, info)
    artifacts.write_text(root / layout.PROMPTS, "".join(p + "\n" for p in prompts))
    if cfg.capture.sequences_from is not None:  # nothing generated: no generation speed to state
        return files, {
            "load_s": loaded_at - started,
            "sequences_from": cfg.capture.sequences_from,
            "feed_s": time.perf_counter() - loaded_at,
            "model_cache": loaded.cache,
            "device": placement(cfg.model, loaded, device),
            "dtype": cfg.model.dtype,
        }
    return files, {
        "load_s": loaded_at - started,
        "generate_s": generate_s,
        "batch_size": cfg.capture.batch_size,
        "new_tokens": sum(s.new_tokens for s in samples),
        "forward_calls": passes.count,
        "tokens_per_s": sum(s.new_tokens for s in samples) / generate_s,
        "weight_bytes": sum(p.numel() * p.element_size() for p in loaded.model.parameters()),
        "model_cache": loaded.cache,
        "device": placement(cfg.model, loaded, device),
        "dtype": cfg.model.dtype,
        "seed": cfg.capture.sampling_seed,
    }


FEEDS_ANY_GENERATION = frozenset({"positions", "sequences_from"})
"""Capture settings that do not change what is generated: a run differing only in these generates
the same tokens."""


def sequences_source(cfg: RunConfig, run: RunData, prompts: list[str]) -> list[dict[str, Any]]:
    """The sample records of the run ``cfg.capture.sequences_from`` names, checked to be what this
    run would generate itself: the same model, prompts and generation settings. Its samples.json is
    noted as this stage's input."""
    assert cfg.capture.sequences_from is not None
    name = f"{cfg.capture.sequences_from}/{layout.SAMPLES}"
    source = Path(os.path.normpath(run.root / cfg.capture.sequences_from))  # the run may not exist yet
    if not (source / layout.SAMPLES).is_file() or not (source / layout.CONFIG).is_file():
        raise ReplicationError(f"capture.sequences_from: {source} holds no captured run")
    theirs = RunData(source)
    mine, other = cfg.capture.model_dump(), theirs.config.capture.model_dump()
    differ = sorted(k for k in mine if k not in FEEDS_ANY_GENERATION and mine[k] != other[k])
    if theirs.config.model != cfg.model:
        differ.insert(0, "model")
    if theirs.prompts != prompts:
        differ.append("the prompts")
    if differ:
        raise ReplicationError(
            f"capture.sequences_from: {source} generated with other settings ({', '.join(differ)}): "
            "its tokens are not this run's"
        )
    run.reads[name] = artifacts.sha256_file(source / layout.SAMPLES)
    return theirs.records


def training_rows(cfg: RunConfig, samples: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """The training and validation rows, and the rows per (padded) sample; None: per-token rows."""
    check_finite(samples)
    if cfg.capture.positions == "all":  # every row is a real token: no padding
        return (*positional_split_rows(samples, cfg.train.train_fraction), None)
    stacked = stack_samples(samples)
    return (*positional_split(stacked, cfg.train.train_fraction), int(stacked.shape[1]))


def _summary(
    samples: int, rows_per_sample: int | None, train_x: torch.Tensor, val_x: torch.Tensor, result: TrainResult
) -> dict[str, Any]:
    return {
        "samples": samples,
        "rows_per_sample": rows_per_sample,
        "train_rows": int(train_x.shape[0]),
        "val_rows": int(val_x.shape[0]),
        "best_epoch": result.best_epoch,
        "last_epoch": len(result.history),
    }


def train_stage(
    cfg: RunConfig, run: RunData, ctx: Context, progress: bool, untrained: bool = False
) -> tuple[list[str], dict[str, Any]]:
    samples = run.activations
    train_x, val_x, rows_per_sample = training_rows(cfg, samples)
    result = train_sae(train_x, val_x, cfg.train, progress, untrained=untrained)
    result.sae.save(run.target(layout.SAE).parent)
    artifacts.save_tensors(run.target(layout.LAST_CODES), {"codes": result.last_codes}, {})
    artifacts.write_json(run.target(layout.HISTORY), result.history)
    summary = _summary(len(samples), rows_per_sample, train_x, val_x, result)
    artifacts.write_json(run.target(layout.TRAIN_SUMMARY), summary)
    return [run.name(n) for n in layout.TRAIN_FILES], {"device": "cpu", "dtype": "float32", "seed": cfg.train.seed}


def analyze_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    samples, records = run.activations, run.records
    if len(records) != len(samples):
        raise ReplicationError(f"{run.root / layout.SAMPLES} and the activations disagree in length")
    x, rows = sample_rows(samples)
    codes = analyze.encode(run.sae, x)
    last = artifacts.load_tensors(run.path(layout.LAST_CODES))["codes"].numpy()
    artifacts.save_tensors(run.target(layout.CODES), {"codes": torch.from_numpy(codes)}, {})
    top = {
        "row_rule": ROW_RULE,
        "encoded_rows": rows,
        "prefill_samples": [r["index"] for r in records if r["source"] == "prefill"],
        "tie_order": cfg.analyze.tie_order,
        "dimensions": analyze.top_activating(codes, run.prompts, cfg.analyze.top_k, cfg.analyze.tie_order),
    }
    artifacts.write_json(run.target(layout.TOP_PROMPTS), top)
    pca = {"source": "last training epoch's codes", **analyze.pca_2d(last)}
    artifacts.write_json(run.target(layout.PCA), pca)
    return [run.name(n) for n in layout.ANALYZE_FILES], {}


def splice_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    kept = [(r["token_ids"], s.shape[1]) for r, s in zip(run.records, run.activations, strict=True)]
    sequences = scorable([ids for ids, _ in kept])
    spans = captured_spans(sequences, [n for ids, n in kept if len(ids) >= 2])
    device = resolve_device(cfg.capture.device)
    loaded = ctx.model(cfg.model, device, Workload.of(cfg, len(sequences)))
    mean = torch.from_numpy(run.raw).double().mean(dim=0)  # of the rows the samples hold
    result = splice_result(ctx.scorer(cfg, device, sequences), run.sae, spans, mean)
    splice = {"layer": cfg.capture.layer, "hook": hook_point(cfg.capture.layer), **result}
    artifacts.write_json(run.root / layout.SPLICE, splice)
    return [layout.SPLICE], {"device": placement(cfg.model, loaded, device), "dtype": cfg.model.dtype}


def control_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    """The same SAE at its initialisation (same seed, no optimiser step), through the same analysis:
    what the trained SAE's readings are to be compared with."""
    trained, info = train_stage(cfg, run, ctx, progress, untrained=True)
    analyzed, _ = analyze_stage(cfg, run, ctx, progress)
    return trained + analyzed, {**info, "optimizer_steps": 0}


def shuffled_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    """The same recipe on the same rows with each dimension shuffled across rows (training and
    validation apart): a training curve with nothing to learn, what the curve's claims are compared
    with. Only its history and summary are kept."""
    samples = run.activations
    train_x, val_x, rows_per_sample = training_rows(cfg, samples)
    seed = cfg.train.seed
    train_x, val_x = shuffle_dimensions(train_x, seed), shuffle_dimensions(val_x, seed + 1)
    result = train_sae(train_x, val_x, cfg.train, progress)
    artifacts.write_json(run.target(layout.HISTORY), result.history)
    summary = _summary(len(samples), rows_per_sample, train_x, val_x, result)
    artifacts.write_json(run.target(layout.TRAIN_SUMMARY), summary | {"shuffle_seeds": [seed, seed + 1]})
    return [run.name(layout.HISTORY), run.name(layout.TRAIN_SUMMARY)], {"seed": seed}


def check_finite(samples: list[torch.Tensor]) -> None:
    """NaN or inf in a captured sample is named before any training."""
    for index, sample in enumerate(samples):
        if not torch.isfinite(sample).all():
            raise ReplicationError(f"{layout.ACTIVATIONS}: {layout.sample_key(index)} holds NaN or inf")
