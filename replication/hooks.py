"""The hook point: where on a decoder block the study looks, what a last-call hook keeps, and how
the splice test replaces a block's output."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

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
    """The (batch, seq, d) tensor of a decoder layer's output, whichever form the library returns.

    transformers 4.x returned a tuple whose first item is the hidden state (the original's
    ``output[0]``); 5.x returns the tensor itself, where ``output[0]`` would drop the batch axis.
    """
    tensor = output if isinstance(output, torch.Tensor) else output[0]
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise ReplicationError(f"unexpected decoder-layer output: {type(output).__name__}")
    return tensor


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


BATCH_TOKENS = 1024
"""Padded tokens per batch of a pass over many sequences: bounds the (batch, seq, ...) tensors it holds."""


@dataclass
class PaddedBatch:
    """Sequences of similar length, right-padded: a causal model's real positions never see the
    padding after them."""

    rows: list[int]
    """Indices of its sequences in the list they came from."""
    lengths: list[int]
    input_ids: torch.Tensor
    """(batch, T) on the CPU, padded with 0."""
    attention_mask: torch.Tensor
    """(batch, T): 1 on each row's own tokens."""


BATCH_COST = 64
"""What one more batch costs, in padded tokens: ``right_padded`` splits where padding costs more."""


def right_padded(sequences: list[list[int]], batch_tokens: int = BATCH_TOKENS) -> list[PaddedBatch]:
    """``sequences`` in batches of similar length, shortest first, each at most ``batch_tokens``
    padded tokens (a longer sequence alone): of all the ways to cut the sequences, in order of
    length, into such batches, the one with the fewest padded tokens, each batch counted as
    ``BATCH_COST`` tokens more."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    length = [len(sequences[i]) for i in order]
    # best[j]: the cheapest cut of the j shortest; start[j]: where its last batch starts.
    best, start = [0] + [0] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        options = [(best[j - 1] + length[j - 1] + BATCH_COST, j - 1)]  # the j-th alone
        for i in range(j - 2, -1, -1):  # longer batches ending with it, while within the budget
            if (j - i) * length[j - 1] > batch_tokens:
                break
            options.append((best[i] + (j - i) * length[j - 1] + BATCH_COST, i))
        best[j], start[j] = min(options)
    cuts, j = [], len(order)
    while j > 0:
        cuts.append((start[j], j))
        j = start[j]
    batches = []
    for first, end in reversed(cuts):
        rows = order[first:end]
        lengths = [len(sequences[i]) for i in rows]
        input_ids = torch.zeros((len(rows), max(lengths)), dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, i in enumerate(rows):
            input_ids[row, : lengths[row]] = torch.tensor(sequences[i], dtype=torch.long)
            mask[row, : lengths[row]] = 1
        batches.append(PaddedBatch(rows, lengths, input_ids, mask))
    return batches


SHARED_PREFIX = 4
"""Leading tokens all sequences of a batch share, from which they are computed once (fewer: no gain)."""


def can_share_prefix(model: PreTrainedModel) -> bool:
    """Whether a prefix's keys and values can be computed once and handed to every sequence in a
    plain ``DynamicCache``: not for a model with sliding-window attention layers, whose cache keeps
    a window of its own."""
    return getattr(model.config, "sliding_window", None) is None


def shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each at least one token of its own."""
    if not sequences:
        return 0
    shortest = min(len(ids) for ids in sequences)
    length = 0
    while length < shortest - 1 and len({ids[length] for ids in sequences}) == 1:
        length += 1
    return length


def prefix_to_share(model: PreTrainedModel, sequences: Sequence[Sequence[int]]) -> int:
    """The leading tokens of ``sequences`` to compute once for all of them: their shared prefix
    where it is ``SHARED_PREFIX`` tokens or more and the model's cache can hand it out, else 0."""
    shared = shared_prefix(sequences) if can_share_prefix(model) else 0
    return shared if shared >= SHARED_PREFIX else 0


def cached_kv(cache: Any, layers: slice) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The keys and values a forward pass left in its ``DynamicCache``, for ``layers``."""
    return [(layer.keys, layer.values) for layer in cache.layers[layers]]


def expanded_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> DynamicCache:
    """A cache holding ``kv`` (one (keys, values) per layer, batch 1) for each of ``batch`` rows."""
    return DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in kv])
