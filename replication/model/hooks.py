"""The hook point on a decoder block: the last-call hook, replacing a block's output, and the one way a
pass runs only some blocks (stops at layer L, or starts after it)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from replication.errors import ReplicationError

Replace = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LastCall:
    """What a last-call hook holds: the latest hidden state (batch, seq, d) and the call count;
    with ``keep_all``, every call's hidden state in order (batched capture needs them)."""

    hidden: torch.Tensor | None = None
    calls: int = 0
    keep_all: bool = False
    every: list[torch.Tensor] = field(default_factory=list)


def hidden_state(output: Any) -> torch.Tensor:
    """The (batch, seq, d) tensor of a decoder layer's output, whichever form the library returns."""
    # transformers 4.x returned a tuple, the hidden state first (the original's ``output[0]``); 5.x returns
    # the tensor itself, where ``output[0]`` would drop the batch axis.
    tensor = output if isinstance(output, torch.Tensor) else output[0]
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise ReplicationError(f"unexpected decoder-layer output: {type(output).__name__}")
    return tensor


@dataclass
class Calls:
    count: int = 0


@contextmanager
def counted_calls(module: nn.Module) -> Iterator[Calls]:
    """How often ``module`` runs inside the block: once per forward pass, whatever the batch."""
    calls = Calls()

    def hook(_module: nn.Module, _inputs: Any) -> None:
        calls.count += 1

    handle = module.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def last_call_hook(module: nn.Module, keep_all: bool = False) -> Iterator[LastCall]:
    """A forward hook on ``module`` that keeps its most recent output (and, with ``keep_all``,
    every output); removed on exit."""
    store = LastCall(keep_all=keep_all)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        store.hidden = hidden_state(output).detach()
        store.calls += 1
        if store.keep_all:
            store.every.append(store.hidden)

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


LAYERS = "model.layers"
"""The module path of a Llama-architecture causal LM's decoder blocks (``model.model.layers``)."""


def hook_point(layer: int) -> str:
    """The module path of decoder block ``layer``, the one place it is spelled: ``model.layers.10``
    is the original's ``model.model.layers[10]``."""
    return f"{LAYERS}.{layer}"


def num_layers(model: PreTrainedModel) -> int:
    return len(model.get_submodule(LAYERS))  # type: ignore[arg-type]


def decoder_layer(model: PreTrainedModel, layer: int) -> nn.Module:
    """The decoder block at ``hook_point(layer)``, or a one-line error naming the layer and the depth."""
    depth = num_layers(model)
    if not 0 <= layer < depth:
        raise ReplicationError(
            f"capture.layer={layer} is beyond the model: it has {depth} decoder layers (0..{depth - 1})"
        )
    return model.get_submodule(hook_point(layer))


@contextmanager
def replaced_output(module: nn.Module, replace: Replace | None) -> Iterator[None]:
    """While open, ``module``'s hidden-state output is ``replace(hidden)`` (unchanged if None)."""
    if replace is None:
        yield
        return

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        new = replace(hidden_state(output))
        return new if isinstance(output, torch.Tensor) else (new, *output[1:])

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def input_device(model: PreTrainedModel) -> torch.device:
    """Where a model's inputs go: its input embeddings' device (under a device map, the first
    layer's; the model's other parameters may sit elsewhere)."""
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings.weight, torch.Tensor)
    return embeddings.weight.device


@contextmanager
def only_layers(model: PreTrainedModel, layers: slice) -> Iterator[None]:
    """While open, the model's decoder stack is ``layers`` of its blocks (the same modules): its own
    forward then computes the attention mask and the rotary position embeddings as always, and runs
    those blocks only."""
    decoder_layer(model, 0)  # the stack is where the hook point says
    inner = model.get_submodule("model")
    full = inner.get_submodule("layers")
    assert isinstance(full, nn.ModuleList)
    inner.layers = nn.ModuleList(list(full)[layers])
    try:
        yield
    finally:
        inner.layers = full


def cache_kwargs(module: nn.Module, cache: Any) -> dict[str, Any]:
    """The keyword arguments that hand ``module`` a KV cache (none: ``None``): ``cache`` from
    transformers 5.25 on, where ``past_key_values`` is deprecated, ``past_key_values`` before."""
    name = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": cache is not None}


def returned_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, under either name."""
    return output["cache"] if "cache" in output else output["past_key_values"]
