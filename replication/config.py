"""Run configuration: frozen dataclasses built from a YAML profile plus ``--section.key=value``.

A profile (``replication/profiles/NAME.yaml``) names the model, the hook layer, the generation
settings, the SAE shape and the training settings. The defaults of every field reproduce what
the original study ran (see METHOD.md in the study's material); every departure is a named
field, so it shows in the saved config, its hash and the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from replication.errors import ReplicationError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PROFILES_DIR = PACKAGE_DIR / "profiles"

Source = Literal["local", "gguf_package", "random_init"]
DType = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
Activation = Literal["relu", "linear"]
Reduction = Literal["sum", "mean", "sample_mean"]
Norm = Literal["free", "unit"]
Positions = Literal["last_call", "all"]


@dataclass(frozen=True)
class ModelConfig:
    """Which language model to hook, and where its weights come from (never a download)."""

    source: Source
    """``local``: a directory or the local Hugging Face cache; ``gguf_package``: a GGUF file
    shipped inside a Python package; ``random_init``: random weights from a config directory."""
    name: str
    """The model's name as reports and manifests show it."""
    repo_ids: tuple[str, ...] = ()
    """``local``: Hugging Face repository ids looked up in the local cache, in this order."""
    path: str | None = None
    """``local``: a directory holding the weights (wins over the cache). ``random_init``: the
    directory with ``config.json``, the tokenizer and ``generation_config.json``. Relative paths
    are taken from the repository root."""
    package: str | None = None
    """``gguf_package``: the importable package that ships the GGUF file."""
    gguf_file: str | None = None
    """``gguf_package``: the file name of the GGUF inside that package."""
    dtype: DType = "float32"
    """Weights' dtype. The original loaded the transformers-4.x default, float32."""
    init_seed: int = 0
    """``random_init``: ``torch.manual_seed`` right before the model is built."""
    tokenizer_path: str | None = None
    """``random_init``: the tokenizer's directory when it is not ``path``."""
    random_init_path: str | None = None
    """The config directory ``--random-init`` builds this model from, with random weights: its
    shape and speed without its weights. Structural claims only; semantic ones never."""

    def __post_init__(self) -> None:
        needs = {"gguf_package": ("package", "gguf_file"), "random_init": ("path",)}
        for name in needs.get(self.source, ()):
            if getattr(self, name) is None:
                raise ReplicationError(f"model.{name} is required when model.source={self.source}")
        if self.source == "local" and not (self.path or self.repo_ids):
            raise ReplicationError("model.source=local needs model.path or model.repo_ids")


@dataclass(frozen=True)
class CaptureConfig:
    """Part 2: generation with a forward hook whose stored sample is the LAST call's output."""

    layer: int = 10
    """0-based index into ``model.model.layers``; the hook stores that block's output."""
    max_length: int = 50
    """``generate(max_length=...)``: counts the prompt, so new tokens = 50 - prompt length."""
    chat_template: bool = False
    """The original fed the raw prompt; True wraps it in the tokenizer's chat template."""
    sampling_seed: int = 0
    """Seeds the generator before each prompt (the original set none), from (seed, index)."""
    prompts: str = "fixtures/prompts.txt"
    """One prompt a line; relative paths are taken from the repository root."""
    device: Device = "auto"
    """``auto`` picks CUDA when there is one."""
    batch_size: int = 1
    """Prompts per ``generate`` call. 1 is the original's way; larger batches left-pad and store
    for every prompt what the one-at-a-time run stores (see capture.capture_batch)."""
    positions: Positions = "last_call"
    """``last_call``: each sample is the hook's last call, as the original. ``all``: every token
    position the model fed itself while generating (the prompt and every new token but the last),
    one row each -- a per-token dataset."""

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ReplicationError(f"capture.layer={self.layer} must be >= 0")
        if self.max_length < 2:
            raise ReplicationError(f"capture.max_length={self.max_length} must be >= 2")
        if self.batch_size < 1:
            raise ReplicationError(f"capture.batch_size={self.batch_size} must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Part 3: the sparse autoencoder and its training loop."""

    expansion: int = 2
    """Code size = expansion * d_model (4096 -> 8192 in the write-up)."""
    decoder_activation: Activation = "relu"
    """The original put a ReLU on the decoder output; ``linear`` is the usual SAE."""
    l1_coefficient: float = 0.001
    """Weight of the L1 term of the loss."""
    l1_reduction: Reduction = "sum"
    """The original summed |z| over the whole batch; ``mean`` averages it over all code values;
    ``sample_mean`` sums it over the code dimensions of a row and averages over rows, as SAEs are
    trained today (the penalty no longer grows with the batch)."""
    decoder_norm: Norm = "free"
    """``free``: decoder directions of any length, as the original; ``unit``: every feature's
    decoder direction is rescaled to unit norm at initialisation and after every step."""
    batch_size: int = 0
    """Training rows per optimiser step; 0 is the original's one full-batch step per epoch. With
    minibatches an epoch visits every training row once, in an order drawn from ``seed``."""
    lr: float = 0.001
    """Adam learning rate."""
    max_epochs: int = 50
    """Upper bound on epochs; each epoch is ONE full-batch optimiser step."""
    patience: int = 5
    """Stop when this many epochs in a row fail to improve the best validation MSE."""
    train_fraction: float = 0.8
    """The first int(fraction * N) samples train, the rest validate (no shuffling)."""
    sparsity_threshold: float = 0.01
    """A code counts as near-zero when |z| < threshold (the write-up's "<0.01")."""
    seed: int = 0
    """``torch.manual_seed`` right before the SAE is built (encoder first, then decoder)."""

    def __post_init__(self) -> None:
        if self.expansion < 1:
            raise ReplicationError(f"train.expansion={self.expansion} must be >= 1")
        if not 0.0 < self.train_fraction < 1.0:
            raise ReplicationError(f"train.train_fraction={self.train_fraction} not in (0, 1)")
        if self.max_epochs < 1 or self.patience < 1:
            raise ReplicationError("train.max_epochs and train.patience must be >= 1")
        if self.l1_coefficient < 0 or self.lr <= 0:
            raise ReplicationError("train.l1_coefficient must be >= 0 and train.lr > 0")
        if self.batch_size < 0:
            raise ReplicationError(f"train.batch_size={self.batch_size} must be >= 0 (0 = full batch)")


@dataclass(frozen=True)
class AnalyzeConfig:
    """Part 4: top-activating prompts per code dimension."""

    top_k: int = 5
    """Prompts listed per dimension, highest code value first."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ReplicationError(f"analyze.top_k={self.top_k} must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; its hash names the run's configuration."""

    profile: str
    """The profile this config was built from."""
    model: ModelConfig
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain

    def hash(self) -> str:
        """sha256 of the canonical JSON of the config."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def section_hash(self, sections: tuple[str, ...]) -> str:
        """sha256 of the named config sections only: what one stage's output depends on."""
        data = {name: self.to_dict()[name] for name in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def prompts_path(self) -> Path:
        return repo_path(self.capture.prompts)


def repo_path(path: str) -> Path:
    """An absolute path, or one relative to the repository root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Build the config of profile ``name`` (or a YAML file path), then apply overrides."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles())
        raise ReplicationError(f"unknown profile {name!r} (known: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ReplicationError(f"{where}: malformed YAML") from None
    if not isinstance(data, dict):
        raise ReplicationError(f"{path}: a profile must be a mapping")
    data.setdefault("profile", path.stem)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from plain data (a profile or a saved ``config.yaml``)."""
    config: RunConfig = _build(RunConfig, data, "")
    return config


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``--train.lr=1e-4`` style arguments to {"train.lr": 0.0001}; values are YAML scalars."""
    overrides: dict[str, Any] = {}
    for arg in args:
        key, sep, raw = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or "." not in key:
            raise ReplicationError(f"unrecognised argument {arg!r} (overrides look like --train.lr=1e-4)")
        overrides[key] = yaml.safe_load(raw) if raw else None
    return overrides


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    if section not in {f.name for f in dataclasses.fields(RunConfig)} or not name:
        raise ReplicationError(f"unknown config key {key!r}")
    node = data.setdefault(section, {})
    if not isinstance(node, dict):
        raise ReplicationError(f"config section {section!r} must be a mapping")
    node[name] = value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ReplicationError(f"config {where or 'root'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ReplicationError(f"unknown config key '{where}{unknown[0]}'")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ReplicationError(f"config {where}{missing[0]} is missing")
    return cls(**{key: _coerce(hints[key], value, f"{where}{key}") for key, value in data.items()})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _coerce(inner, value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ReplicationError(f"config {where}={value!r} must be one of {typing.get_args(hint)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ReplicationError(f"config {where} must be a list")
        return tuple(_coerce(typing.get_args(hint)[0], v, where) for v in value)
    if hint is float and isinstance(value, int | str) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-4" as a string
            return float(value)
        except ValueError:
            raise ReplicationError(f"config {where}={value!r} must be float") from None
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ReplicationError(f"config {where}={value!r} must be {hint.__name__}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
