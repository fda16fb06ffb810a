"""Run configuration: frozen pydantic models built from a YAML profile plus ``--section.key=value``.

Every default reproduces what the original study ran (docs/method.md); every departure is a named
field, so that it shows in the saved config, its hash and the report.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from replication.errors import ReplicationError

PACKAGE_DIR = Path(str(importlib.resources.files("replication")))
"""The package as installed, with the data it carries: a checkout's claims/ and fixtures/ (links)."""
PROFILES_DIR = PACKAGE_DIR / "profiles"
CLAIMS_DIR = PACKAGE_DIR / "claims"
FIXTURES_DIR = PACKAGE_DIR / "fixtures"
"""The study's prompts, write-up, topic rule and figure prompts, and the model configs of the profiles."""

Source = Literal["local", "gguf_package", "random_init"]
DType = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
Activation = Literal["relu", "linear"]
Reduction = Literal["sum", "mean", "sample_mean"]
Norm = Literal["free", "unit"]
Positions = Literal["last_call", "all"]
TieOrder = Literal["numpy_1_24", "current"]
DeviceMap = Literal["auto"]


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


def _unset(value: Any) -> bool:
    return value is None


# Lax on purpose: YAML 1.1 reads "1e-4" as a string, and an int such as ``lr: 1`` is a float too;
# but a lax float would also read a YAML ``true`` as 1.0, hence _refuse_bool.
YamlFloat = Annotated[float, Field(strict=False), BeforeValidator(_refuse_bool)]


class _Frozen(BaseModel):
    # Strict, so a YAML ``true`` is no int 1 and ``1`` no bool; frozen, so configs are hashable; finite,
    # so no float field takes nan, inf or -inf (nothing could be done with one, and JSON holds none).
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True, allow_inf_nan=False
    )

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (``model_copy(update=...)`` validates nothing)."""
        return self.model_validate(self.model_dump() | changes)


class ModelConfig(_Frozen):
    """Which language model to hook, and where its weights come from (never a download)."""

    source: Source
    """``local``: a directory or the local Hugging Face cache; ``gguf_package``: a GGUF file
    shipped inside a Python package; ``random_init``: random weights from a config directory."""
    name: str
    """The model's name as reports and manifests show it."""
    # Lax: YAML gives a list, which strict mode would refuse as a tuple.
    repo_ids: Annotated[tuple[str, ...], Field(strict=False)] = ()
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
    # The fields below were added after runs were committed: left out of the saved config (and so
    # of its hash) while unset, so that the configs of those runs keep their hashes.
    tokenizer_package: str | None = Field(default=None, exclude_if=_unset)
    """``random_init``: the installed distribution (its pip name) that ships the tokenizer file;
    wins over ``tokenizer_path``. Its special tokens come from ``tokenizer_config.json`` in
    ``path``."""
    tokenizer_file: str | None = Field(default=None, exclude_if=_unset)
    """``random_init``: the tokenizer file (``tokenizer.json``) inside that distribution, as a path
    relative to where it is installed (``site-packages``)."""
    device_map: DeviceMap | None = Field(default=None, exclude_if=_unset)
    """``auto``: accelerate places the model over the GPUs and the CPU memory (a model larger than
    one GPU); ``capture.device`` is then not used. Unset: the whole model on ``capture.device``."""

    @model_validator(mode="after")
    def _source_has_its_fields(self) -> Self:
        needs = {"gguf_package": ("package", "gguf_file"), "random_init": ("path",)}
        for name in needs.get(self.source, ()):
            if getattr(self, name) is None:
                raise PydanticCustomError("model_source", f"model.{name} is required when model.source={self.source}")
        if (self.tokenizer_package is None) != (self.tokenizer_file is None):
            raise PydanticCustomError("model_source", "model.tokenizer_package and model.tokenizer_file go together")
        if self.source == "local" and not (self.path or self.repo_ids):
            raise PydanticCustomError("model_source", "model.source=local needs model.path or model.repo_ids")
        return self


class CaptureConfig(_Frozen):
    """Part 2: generation with a forward hook whose stored sample is the LAST call's output."""

    layer: int = Field(default=10, ge=0)
    """0-based index into ``model.model.layers``; the hook stores that block's output."""
    max_length: int = Field(default=50, ge=2)
    """``generate(max_length=...)``: counts the prompt, so new tokens = 50 - prompt length."""
    chat_template: bool = False
    """The original fed the raw prompt; True wraps it in the tokenizer's chat template."""
    sampling_seed: int = 0
    """Seeds the generator before each prompt (the original set none), from (seed, index)."""
    prompts: str = "fixtures/prompts.txt"
    """One prompt a line; relative paths are taken from the repository root."""
    device: Device = "auto"
    """``auto`` picks CUDA when there is one."""
    batch_size: int = Field(default=1, ge=1)
    """Prompts per ``generate`` call. 1 is the original's way; larger batches left-pad and store
    for every prompt what the one-at-a-time run stores (see capture.capture_batch)."""
    positions: Positions = "last_call"
    """``last_call``: each sample is the hook's last call, as the original. ``all``: every token
    position the model fed itself while generating (the prompt and every new token but the last),
    one row each -- a per-token dataset."""
    # Added after runs were committed: left out of the saved config (and its hash) while unset.
    sequences_from: str | None = Field(default=None, exclude_if=_unset)
    """With ``positions: all``: a run directory (relative to this run's) whose generated sequences
    this capture feeds instead of generating them again -- a run of the same model, prompts and
    generation settings, so the same tokens. The per_token ablation feeds the run's own."""

    @model_validator(mode="after")
    def _sequences_from_feeds_every_position(self) -> Self:
        if self.sequences_from is not None and self.positions != "all":
            raise PydanticCustomError(
                "capture_sequences", "capture.sequences_from needs capture.positions=all (it only feeds tokens)"
            )
        return self


class TrainConfig(_Frozen):
    """Part 3: the sparse autoencoder and its training loop."""

    expansion: int = Field(default=2, ge=1)
    """Code size = expansion * d_model (4096 -> 8192 in the write-up)."""
    decoder_activation: Activation = "relu"
    """The original put a ReLU on the decoder output; ``linear`` is the usual SAE."""
    l1_coefficient: YamlFloat = Field(default=0.001, ge=0)
    """Weight of the L1 term of the loss."""
    l1_reduction: Reduction = "sum"
    """The original summed |z| over the whole batch; ``mean`` averages it over all code values;
    ``sample_mean`` sums it over the code dimensions of a row and averages over rows, as SAEs are
    trained today (the penalty no longer grows with the batch)."""
    decoder_norm: Norm = "free"
    """``free``: decoder directions of any length, as the original; ``unit``: every feature's
    decoder direction is rescaled to unit norm at initialisation and after every step."""
    batch_size: int = Field(default=0, ge=0)
    """Training rows per optimiser step; 0 is the original's one full-batch step per epoch. With
    minibatches an epoch visits every training row once, in an order drawn from ``seed``."""
    lr: YamlFloat = Field(default=0.001, gt=0)
    """Adam learning rate."""
    max_epochs: int = Field(default=50, ge=1)
    """Upper bound on epochs; each epoch is ONE full-batch optimiser step."""
    patience: int = Field(default=5, ge=1)
    """Stop when this many epochs in a row fail to improve the best validation MSE."""
    train_fraction: YamlFloat = Field(default=0.8, gt=0, lt=1)
    """The first int(fraction * N) samples train, the rest validate (no shuffling)."""
    sparsity_threshold: YamlFloat = 0.01
    """A code counts as near-zero when |z| < threshold (the write-up's "<0.01")."""
    seed: int = 0
    """``torch.manual_seed`` right before the SAE is built (encoder first, then decoder)."""


class AnalyzeConfig(_Frozen):
    """Part 4: top-activating prompts per code dimension."""

    top_k: int = Field(default=5, ge=1)
    """Prompts listed per dimension, highest code value first."""
    tie_order: TieOrder = "numpy_1_24"
    """How equal code values are ordered in a top-k list: ``numpy_1_24`` as the original's
    ``np.argsort`` did (``replication.sae.tieorder``; a dead feature then lists prompts 97, 24, 26, 27,
    28, the write-up's dimension 0), ``current`` as this machine's numpy does."""


class RunConfig(_Frozen):
    """Everything a run depends on; its hash names the run's configuration."""

    profile: str
    """The profile this config was built from."""
    model: ModelConfig
    """The language model and where its weights come from."""
    # Frozen, so one shared default instance is safe.
    capture: CaptureConfig = CaptureConfig()
    """Part 2: generation and the hook."""
    train: TrainConfig = TrainConfig()
    """Part 3: the sparse autoencoder and its training."""
    analyze: AnalyzeConfig = AnalyzeConfig()
    """Part 4: top-activating prompts."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data in field order, tuples as lists: what ``config.yaml`` holds and the hashes read."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the canonical JSON of the config."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def section_hash(self, sections: tuple[str, ...]) -> str:
        """sha256 of the named config sections only: what one stage's output depends on."""
        data = {name: self.to_dict()[name] for name in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def prompts_path(self) -> Path:
        return data_path(self.capture.prompts)


def data_path(path: str) -> Path:
    """An absolute path; a relative one among the package's data where it is there (a profile's
    ``fixtures/tiny``), else from the current directory."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or not (PACKAGE_DIR / candidate).exists():
        return candidate
    return PACKAGE_DIR / candidate


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
    # Only places the values; an unknown section or key is left for validation to name.
    for key, value in (overrides or {}).items():
        section, _, field = key.partition(".")
        node = data.setdefault(section, {})
        if not isinstance(node, dict):
            raise ReplicationError(f"config {section}={node!r} is not a mapping, so {key} cannot be set")
        node[field] = value
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """A validated RunConfig from plain data (a profile or a saved ``config.yaml``)."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc) from None


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``--train.lr=1e-4`` style arguments to {"train.lr": "1e-4"}; values are YAML scalars, typed by validation."""
    overrides: dict[str, Any] = {}
    for arg in args:
        key, sep, raw = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or "." not in key:
            raise ReplicationError(f"unrecognised argument {arg!r} (overrides look like --train.lr=1e-4)")
        overrides[key] = yaml.safe_load(raw) if raw else None
    return overrides


def _one_line(exc: ValidationError) -> ReplicationError:
    """The first of pydantic's errors as one line naming the dotted key (and its value, if one)."""
    error = exc.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    where = where.removeprefix(".") or "root"
    if error["type"] == "extra_forbidden":
        return ReplicationError(f"unknown config key {where!r}")
    if error["type"] == "missing":
        return ReplicationError(f"config {where} is missing")
    if error["type"] == "model_source":  # the input is the whole section, too long to show
        return ReplicationError(f"config {where}: {error['msg']}")
    return ReplicationError(f"config {where}={error['input']!r}: {error['msg']}")


def _ablations() -> dict[str, tuple[str, dict[str, Any]]]:
    table = yaml.safe_load((PACKAGE_DIR / "ablations.yaml").read_text(encoding="utf-8"))
    return {name: (entry["description"], entry["overrides"]) for name, entry in table.items()}


ABLATIONS = _ablations()
"""Named variants of a run's config (``replication/ablations.yaml``), run beside it by ``python -m
replication ablations``: a description and the overrides."""
