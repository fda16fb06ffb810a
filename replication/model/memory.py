"""The pre-flight memory check: weights, KV cache and stored activations against free memory.

Before any weight is loaded, so that a model too large fails in a second with the options named, not
after minutes of loading with an out-of-memory error.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch
from accelerate import init_empty_weights
from transformers import AutoModelForCausalLM, PretrainedConfig

from replication.config import ModelConfig, RunConfig
from replication.errors import ReplicationError

GIB = 2**30


@dataclass(frozen=True)
class Workload:
    """What a run asks of memory beside the weights."""

    max_length: int
    """Tokens a generation can reach (prompt included): the KV cache's length."""
    batch_size: int
    """Sequences generated at once."""
    rows: int
    """Activation rows the capture keeps, at most: every prompt's every position (generous: the
    last-call capture keeps fewer)."""

    @classmethod
    def of(cls, cfg: RunConfig, prompts: int) -> Workload:
        return cls(cfg.capture.max_length, cfg.capture.batch_size, prompts * cfg.capture.max_length)


@dataclass(frozen=True)
class Estimate:
    """Bytes the run needs where the model goes."""

    weights: int
    kv_cache: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations


def parameter_count(config: PretrainedConfig) -> int:
    """The parameters of the model ``config`` describes, counted on accelerate's meta device (no
    memory, no weights); tied weights count once."""
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return int(model.num_parameters())


def estimate(config: PretrainedConfig, dtype: str, workload: Workload) -> Estimate:
    """Weights: parameters x dtype bytes. KV cache: layers x 2 (keys, values) x KV heads x head
    dim x max_length x batch x dtype bytes. Activations: rows x d_model x 4 (float32)."""
    size = getattr(torch, dtype).itemsize
    text = config.get_text_config()
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv = text.num_hidden_layers * 2 * kv_heads * head_dim * workload.max_length * workload.batch_size * size
    return Estimate(
        weights=parameter_count(config) * size,
        kv_cache=kv,
        activations=workload.rows * text.hidden_size * 4,
    )


def free_memory(device: torch.device, device_map: str | None) -> tuple[int, str]:
    """Free bytes where the model goes, and a name for that place. Under a device map, every GPU's
    free memory and the CPU's available memory together (accelerate spreads over all of them)."""
    cpu = int(psutil.virtual_memory().available)
    if device_map is not None:
        gpus = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
        return cpu + sum(gpus), f"the CPU and {len(gpus)} GPU(s)" if gpus else "the CPU"
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0]), str(device)
    return cpu, "the CPU"


def check(
    config: PretrainedConfig,
    model: ModelConfig,
    device: torch.device,
    workload: Workload,
    free: tuple[int, str] | None = None,
) -> Estimate:
    """The estimate, when it fits in ``free`` (default: what ``free_memory`` reports); else a
    one-line error naming the need, what is free and the options."""
    need = estimate(config, model.dtype, workload)
    available, where = free if free is not None else free_memory(device, model.device_map)
    if need.total <= available:
        return need
    options = [f"--model.dtype={d}" for d in ("bfloat16",) if model.dtype == "float32"]
    options += ["--model.device_map=auto"] if model.device_map is None else []
    advice = f"options: {', '.join(options)}" if options else "a machine with more memory is needed"
    raise ReplicationError(
        f"{model.name} in {model.dtype} needs about {need.total / GIB:.1f} GiB "
        f"(weights {need.weights / GIB:.1f}, KV cache {need.kv_cache / GIB:.1f}, activations "
        f"{need.activations / GIB:.1f}) but {where} has {available / GIB:.1f} GiB free; {advice}"
    )
