"""The stages as file-to-file steps of one run directory: capture -> train -> analyze -> splice.

Each stage reads only the files of the stages before it (through a ``RunData``, which notes every
file read with its sha256: the stage's inputs) and records its own files, with their sha256, in the
run's manifest. The run directory's layout is ``replication.layout``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from replication import analysis, artifacts, layout, provenance
from replication.capture import capture, fed_states, generation_settings, read_prompts, samples_of
from replication.config import ModelConfig, RunConfig
from replication.errors import ReplicationError
from replication.hooks import decoder_layer, hook_point, input_device, num_layers
from replication.memory import Workload
from replication.models import LoadedModel, load_model, resolve_device
from replication.rundata import RunData
from replication.splice import LayerScorer, scorable, splice_result
from replication.train import positional_split, positional_split_rows, stack_samples, train_sae

_LOADED: dict[tuple[ModelConfig, str], LoadedModel] = {}
_SCORERS: dict[tuple[ModelConfig, str, int, str], LayerScorer] = {}
_FED: dict[tuple[ModelConfig, str, int, str], list[torch.Tensor]] = {}
SCORERS_KEPT = 4
"""Captures whose splice scorer (and fed states) a process keeps (the run's, and those of its variants)."""


def cached_model(cfg: ModelConfig, device: torch.device, workload: Workload | None = None) -> LoadedModel:
    """The model, loaded once per process: capture and the splice test of one run (and of its
    variants) share it. Only the latest model is kept. With a ``workload``, the memory check runs
    before a load."""
    key = (cfg, str(device))
    if key not in _LOADED:
        _LOADED.clear()
        _SCORERS.clear()
        _FED.clear()
        _LOADED[key] = load_model(cfg, device, workload)
    return _LOADED[key]


def _sequences_key(
    cfg: RunConfig, device: torch.device, sequences: list[list[int]]
) -> tuple[ModelConfig, str, int, str]:
    digest = hashlib.sha256(json.dumps(sequences).encode()).hexdigest()
    return (cfg.model, str(device), cfg.capture.layer, digest)


def cached_fed_states(cfg: RunConfig, device: torch.device, sequences: list[list[int]]) -> list[torch.Tensor]:
    """``capture.fed_states`` of ``sequences`` at the run's layer, computed once per process: the
    per_token ablation stores them for the run's own sequences, and the feature cards shade those
    tokens with them. Keyed by the model, the layer and the sequences; never changed in place."""
    loaded = cached_model(cfg.model, device)
    key = _sequences_key(cfg, device, sequences)
    if key not in _FED:
        while len(_FED) >= SCORERS_KEPT:
            del _FED[next(iter(_FED))]
        _FED[key] = fed_states(loaded.model, cfg.capture.layer, sequences)
    return list(_FED[key])


def cached_scorer(cfg: RunConfig, device: torch.device, sequences: list[list[int]]) -> LayerScorer:
    """The splice scorer of a capture, built once per process: every SAE trained on the same
    sequences (the run's, its other seeds', the ablations that keep its capture) shares its layer-L
    states and its clean and zero-ablated CE. Keyed by the model, the layer and the sequences."""
    loaded = cached_model(cfg.model, device)
    key = _sequences_key(cfg, device, sequences)
    if key not in _SCORERS:
        while len(_SCORERS) >= SCORERS_KEPT:
            del _SCORERS[next(iter(_SCORERS))]
        _SCORERS[key] = LayerScorer(loaded.model, sequences, cfg.capture.layer)
    return _SCORERS[key]


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


def _capture(cfg: RunConfig, run: RunData, progress: bool) -> tuple[list[str], dict[str, Any]]:
    started = time.perf_counter()
    prompts = read_prompts(cfg.prompts_path())
    run.reads[layout.CORPUS] = corpus_digest(prompts)
    device = resolve_device(cfg.capture.device)
    loaded = cached_model(cfg.model, device, Workload.of(cfg, len(prompts)))
    decoder_layer(loaded.model, cfg.capture.layer)
    loaded_at = time.perf_counter()
    if cfg.capture.sequences_from is None:
        samples = capture(loaded.model, loaded.tokenizer, prompts, cfg.capture, progress)
    else:
        samples = samples_of(sequences_source(cfg, run, prompts))
    generate_s = time.perf_counter() - loaded_at
    if cfg.capture.positions == "all":  # every position the model fed itself, one row each
        fed = cached_fed_states(cfg, device, [s.token_ids for s in samples])
        for sample, states in zip(samples, fed, strict=True):
            sample.activation = states[None]
    root = run.root
    tensors = {layout.sample_key(i): s.activation for i, s in enumerate(samples)}
    layer_meta = {"layer": cfg.capture.layer, "model": cfg.model.name}
    artifacts.save_tensors(root / layout.ACTIVATIONS, tensors, layer_meta)
    artifacts.write_json(root / layout.SAMPLES, [s.record(i) for i, s in enumerate(samples)])
    artifacts.write_json(
        root / layout.ORIGINAL_FORMAT,
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
        return list(layout.CAPTURE_FILES), {
            "load_s": loaded_at - started,
            "sequences_from": cfg.capture.sequences_from,
            "feed_s": time.perf_counter() - loaded_at,
            "model_cache": loaded.cache,
            "device": placement(cfg.model, loaded, device),
            "dtype": cfg.model.dtype,
        }
    return list(layout.CAPTURE_FILES), {
        "load_s": loaded_at - started,
        "generate_s": generate_s,
        "batch_size": cfg.capture.batch_size,
        "new_tokens": sum(s.new_tokens for s in samples),
        "forward_calls": sum(s.hook_calls for s in samples),
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


def _train(cfg: RunConfig, run: RunData, progress: bool, untrained: bool = False) -> tuple[list[str], dict[str, Any]]:
    samples = run.samples
    check_finite(samples)
    if cfg.capture.positions == "all":  # every row is a real token: no padding
        train_x, val_x = positional_split_rows(samples, cfg.train.train_fraction)
        rows_per_sample = None
    else:
        stacked = stack_samples(samples)
        train_x, val_x = positional_split(stacked, cfg.train.train_fraction)
        rows_per_sample = int(stacked.shape[1])
    result = train_sae(train_x, val_x, cfg.train, progress, untrained=untrained)
    result.sae.save(run.target(layout.SAE).parent)
    artifacts.save_tensors(run.target(layout.LAST_CODES), {"codes": result.last_codes}, {})
    artifacts.write_json(run.target(layout.HISTORY), result.history)
    summary = {
        "samples": len(samples),
        "rows_per_sample": rows_per_sample,
        "train_rows": int(train_x.shape[0]),
        "val_rows": int(val_x.shape[0]),
        "best_epoch": result.best_epoch,
        "last_epoch": len(result.history),
    }
    artifacts.write_json(run.target(layout.TRAIN_SUMMARY), summary)
    return [run.name(n) for n in layout.TRAIN_FILES], {"device": "cpu", "dtype": "float32", "seed": cfg.train.seed}


def _analyze(cfg: RunConfig, run: RunData, progress: bool) -> tuple[list[str], dict[str, Any]]:
    samples, records = run.samples, run.records
    if len(records) != len(samples):
        raise ReplicationError(f"{run.root / layout.SAMPLES} and the activations disagree in length")
    x, rows = analysis.sample_rows(samples)
    codes = analysis.encode(run.sae, x)
    last = artifacts.load_tensors(run.path(layout.LAST_CODES))["codes"].numpy()
    artifacts.save_tensors(run.target(layout.CODES), {"codes": torch.from_numpy(codes)}, {})
    top = {
        "row_rule": analysis.ROW_RULE,
        "encoded_rows": rows,
        "prefill_samples": [r["index"] for r in records if r["source"] == "prefill"],
        "tie_order": cfg.analyze.tie_order,
        "dimensions": analysis.top_activating(codes, run.prompts, cfg.analyze.top_k, cfg.analyze.tie_order),
    }
    artifacts.write_json(run.target(layout.TOP_PROMPTS), top)
    pca = {"source": "last training epoch's codes", **analysis.pca_2d(last)}
    artifacts.write_json(run.target(layout.PCA), pca)
    return [run.name(n) for n in layout.ANALYZE_FILES], {}


def _splice(cfg: RunConfig, run: RunData, progress: bool) -> tuple[list[str], dict[str, Any]]:
    sequences = scorable([r["token_ids"] for r in run.records])
    sae = run.sae
    device = resolve_device(cfg.capture.device)
    loaded = cached_model(cfg.model, device, Workload.of(cfg, len(sequences)))
    result = splice_result(cached_scorer(cfg, device, sequences), sae)
    splice = {"layer": cfg.capture.layer, "hook": hook_point(cfg.capture.layer), **result}
    artifacts.write_json(run.root / layout.SPLICE, splice)
    return [layout.SPLICE], {"device": placement(cfg.model, loaded, device), "dtype": cfg.model.dtype}


def _control(cfg: RunConfig, run: RunData, progress: bool) -> tuple[list[str], dict[str, Any]]:
    """The same SAE at its initialisation (same seed, no optimiser step), through the same analysis:
    what the trained SAE's readings are to be compared with."""
    trained, info = _train(cfg, run, progress, untrained=True)
    analyzed, _ = _analyze(cfg, run, progress)
    return trained + analyzed, {**info, "optimizer_steps": 0}


def check_finite(samples: list[torch.Tensor]) -> None:
    """NaN or inf in a captured sample is named before any training."""
    for index, sample in enumerate(samples):
        if not torch.isfinite(sample).all():
            raise ReplicationError(f"{layout.ACTIVATIONS}: {layout.sample_key(index)} holds NaN or inf")


@dataclass(frozen=True)
class Stage:
    """A stage: the config sections its output depends on, and its body, which reads the run's files
    through a RunData and returns the names of the files it wrote and facts to record."""

    sections: tuple[str, ...]
    body: Callable[[RunConfig, RunData, bool], tuple[list[str], dict[str, Any]]]
    overlay: str | None = None
    """The subdirectory whose SAE files this stage reads and writes (the control's)."""


STAGES = {
    "capture": Stage(("model", "capture"), _capture),
    "train": Stage(("train",), _train),
    "analyze": Stage(("train", "analyze"), _analyze),
    "splice": Stage(("model", "capture", "train"), _splice),
    "control": Stage(("train", "analyze"), _control, overlay=layout.CONTROL),
}
assert tuple(STAGES) == layout.STAGES


def current_digest(cfg: RunConfig, run_dir: Path) -> Callable[[str], str | None]:
    """The sha256 an input has now: a run file's, or (``layout.CORPUS``) the corpus's."""

    def digest(name: str) -> str | None:
        if name == layout.CORPUS:
            return corpus_digest(read_prompts(cfg.prompts_path()))
        path = Path(os.path.normpath(run_dir / name))  # names of another run's files hold ".."
        return artifacts.sha256_file(path) if path.is_file() else None

    return digest


def run_stage(name: str, cfg: RunConfig, run_dir: Path, progress: bool = True, force: bool = False) -> bool:
    """Run one stage, or skip it when its config, inputs and outputs are unchanged; True if it ran.

    Files are written atomically and the manifest last: a run killed at any moment leaves the
    previous complete state, and the same command finishes it.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ReplicationError(f"--out {run_dir} is a file, not a run directory")
    stage = STAGES[name]
    key = cfg.section_hash(stage.sections)
    if not force and artifacts.stage_is_current(run_dir, name, key, current_digest(cfg, run_dir)):
        return False
    started = time.perf_counter()
    provenance.reset_peak_memory()
    run = RunData(run_dir, overlay=stage.overlay)
    outputs, info = stage.body(cfg, run, progress)
    config = cfg.to_dict()
    artifacts.write_config(run_dir, config)
    record = {
        "stage_hash": key,
        "inputs": {name: digest for name, digest in run.reads.items() if name not in outputs},
        "outputs": outputs,
        "wall_s": time.perf_counter() - started,
        **provenance.peak_memory(),
        **info,
    }
    files = [run_dir / name for name in outputs]
    artifacts.record_stage(run_dir, name, files=files, config=config, config_hash=cfg.hash(), info=record)
    return True
