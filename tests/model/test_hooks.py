"""The hook point: where the hook sits (in the tiny model and in SmolLM2), what a last-call hook keeps,
that a hook ends with its block."""

from __future__ import annotations

import random

import pytest
import torch

from replication.config import RunConfig
from replication.errors import ReplicationError
from replication.model.batching import sorted_batches
from replication.model.hooks import (
    cache_kwargs,
    decoder_layer,
    hidden_state,
    hook_point,
    last_call_hook,
    replaced_output,
    returned_cache,
)
from replication.model.loading import LoadedModel
from replication.stages.capture import encode_prompt

LAYER = 10
LONG_PROMPT = "Write a Python function to reverse a linked list."


def test_hook_point_is_the_originals_module(tiny_model: LoadedModel) -> None:
    """model.model.layers[10] in the original's code is the submodule path model.layers.10."""
    assert hook_point(LAYER) == "model.layers.10"
    assert decoder_layer(tiny_model.model, LAYER) is tiny_model.model.model.layers[LAYER]


def test_hook_equals_output_hidden_states(tiny_model: LoadedModel) -> None:
    ids = encode_prompt(tiny_model.tokenizer, LONG_PROMPT, chat_template=False)["input_ids"]
    with last_call_hook(decoder_layer(tiny_model.model, LAYER)) as store, torch.no_grad():
        states = tiny_model.model(ids, output_hidden_states=True).hidden_states
    assert store.calls == 1
    assert store.hidden is not None
    assert store.hidden.shape == (1, ids.shape[1], 64)
    torch.testing.assert_close(store.hidden, states[LAYER + 1], rtol=0, atol=0)
    # The neighbouring layers differ: the hook sits on the right block.
    assert not torch.allclose(store.hidden, states[LAYER])


def test_hooks_end_with_their_block(tiny_model: LoadedModel) -> None:
    """Left by an exception, a last-call hook records no later pass, and a replaced output is the
    layer's own again: the model computes what it did before."""
    ids = encode_prompt(tiny_model.tokenizer, LONG_PROMPT, chat_template=False)["input_ids"]
    layer = decoder_layer(tiny_model.model, LAYER)
    with torch.no_grad():
        clean = tiny_model.model(ids).logits
        with pytest.raises(RuntimeError), last_call_hook(layer) as store:
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError), replaced_output(layer, torch.zeros_like):
            assert not torch.equal(tiny_model.model(ids).logits, clean)  # replaced while open
            raise RuntimeError("boom")
        after = tiny_model.model(ids).logits
    assert store.calls == 0 and store.hidden is None
    torch.testing.assert_close(after, clean, rtol=0, atol=0)


def test_hidden_state_takes_tensor_or_tuple() -> None:
    x = torch.zeros(1, 3, 4)
    assert hidden_state(x) is x
    assert hidden_state((x, None)) is x
    with pytest.raises(ReplicationError):
        hidden_state(torch.zeros(3, 4))  # what output[0] of a bare tensor would give


def test_layer_beyond_model(tiny_model: LoadedModel) -> None:
    with pytest.raises(ReplicationError, match=r"capture.layer=12 is beyond the model: it has 12"):
        decoder_layer(tiny_model.model, 12)


def test_sorted_batches_hold_every_sequence_within_the_budget() -> None:
    """Every sequence once, shortest first, each batch within the token budget (a longer sequence
    alone), right-padded with a mask; a batch closes only when the next sequence would not fit."""
    rng = random.Random(0)
    sequences = [[rng.randrange(9) + 1 for _ in range(n)] for n in (3, 9, 4, 12, 2, 30, 5, 11, 8, 3, 50)]
    budget = 40
    batches = sorted_batches(sequences, budget)
    assert [i for b in batches for i in b.rows] == [4, 0, 9, 2, 6, 8, 1, 7, 3, 5, 10]  # by length, ties by index
    # 5 x 5 = 25 padded tokens, then 8 would make 6 x 8 = 48 > 40; 3 x 11 = 33; 12, 30 and 50 alone
    assert [len(b.rows) for b in batches] == [5, 3, 1, 1, 1]
    for batch in batches:
        width = max(batch.lengths)
        assert batch.input_ids.shape == batch.attention_mask.shape == (len(batch.rows), width)
        assert len(batch.rows) == 1 or len(batch.rows) * width <= budget
        for row, i in enumerate(batch.rows):
            assert batch.input_ids[row, : len(sequences[i])].tolist() == sequences[i]
            assert batch.attention_mask[row].tolist() == [1] * len(sequences[i]) + [0] * (width - len(sequences[i]))


class _Renamed(torch.nn.Module):
    """A forward taking its KV cache as ``cache``, as transformers 5.25 on does."""

    def forward(self, input_ids: torch.Tensor, cache: object = None, use_cache: bool = False) -> dict[str, object]:
        return {"cache": cache}


class _Plain(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, past_key_values: object = None, use_cache: bool = False) -> object:
        return {"past_key_values": past_key_values}


def test_the_cache_goes_by_the_name_the_model_takes() -> None:
    """transformers 5.25 deprecates ``past_key_values`` for ``cache`` (removed in 5.40): each by its name."""
    held = object()
    for module, name in ((_Renamed(), "cache"), (_Plain(), "past_key_values")):
        kwargs = cache_kwargs(module, held)
        assert kwargs == {name: held, "use_cache": True}
        assert returned_cache(module(torch.zeros(1), **kwargs)) is held
    assert cache_kwargs(_Plain(), None) == {"past_key_values": None, "use_cache": False}


@pytest.mark.slow  # loads the real model
def test_hook_equals_output_hidden_states_in_smollm2(smollm2: tuple[RunConfig, LoadedModel]) -> None:
    cfg, loaded = smollm2
    ids = encode_prompt(loaded.tokenizer, "Explain quantum computing in simple terms.", False)["input_ids"]
    with last_call_hook(decoder_layer(loaded.model, cfg.capture.layer)) as store, torch.no_grad():
        states = loaded.model(ids, output_hidden_states=True).hidden_states
    assert len(states) == 31  # embeddings + 30 blocks
    assert store.hidden is not None
    torch.testing.assert_close(store.hidden, states[cfg.capture.layer + 1], rtol=0, atol=0)
