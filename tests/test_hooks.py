"""The hook point: where the hook sits, what a last-call hook keeps, that it is removed."""

from __future__ import annotations

import random

import pytest
import torch

from replication import hooks
from replication.capture import encode_prompt
from replication.errors import ReplicationError
from replication.hooks import decoder_layer, hidden_state, hook_point, last_call_hook
from replication.models import LoadedModel

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


def test_hook_is_removed_on_exit(tiny_model: LoadedModel) -> None:
    layer = decoder_layer(tiny_model.model, LAYER)
    with pytest.raises(RuntimeError), last_call_hook(layer):
        raise RuntimeError("boom")
    assert not layer._forward_hooks


def test_hidden_state_takes_tensor_or_tuple() -> None:
    x = torch.zeros(1, 3, 4)
    assert hidden_state(x) is x
    assert hidden_state((x, None)) is x
    with pytest.raises(ReplicationError):
        hidden_state(torch.zeros(3, 4))  # what output[0] of a bare tensor would give


def test_layer_beyond_model(tiny_model: LoadedModel) -> None:
    with pytest.raises(ReplicationError, match=r"capture.layer=12 is beyond the model: it has 12"):
        decoder_layer(tiny_model.model, 12)


def test_right_padded_batches_cost_the_fewest_padded_tokens() -> None:
    """Every sequence once, in order of length, each batch within the token budget (a longer
    sequence alone), right-padded with a mask; and no other cut of the sorted sequences into
    contiguous batches costs fewer padded tokens (BATCH_COST a batch), checked against all 2^(n-1)."""
    rng = random.Random(0)
    sequences = [[rng.randrange(9) + 1 for _ in range(n)] for n in (3, 9, 4, 12, 2, 30, 5, 11, 8, 3)]
    budget = 40
    batches = hooks.right_padded(sequences, budget)
    assert sorted(i for b in batches for i in b.rows) == list(range(len(sequences)))
    lengths = [len(sequences[i]) for b in batches for i in b.rows]
    assert lengths == sorted(lengths)
    for batch in batches:
        width = max(batch.lengths)
        assert batch.input_ids.shape == batch.attention_mask.shape == (len(batch.rows), width)
        assert len(batch.rows) == 1 or len(batch.rows) * width <= budget
        for row, i in enumerate(batch.rows):
            assert batch.input_ids[row, : len(sequences[i])].tolist() == sequences[i]
            assert batch.attention_mask[row].tolist() == [1] * len(sequences[i]) + [0] * (width - len(sequences[i]))

    def cost(cut: list[list[int]]) -> int:
        return sum(len(rows) * max(rows) + hooks.BATCH_COST for rows in cut)

    ordered = sorted(len(s) for s in sequences)
    cuts = []
    for mask in range(2 ** (len(ordered) - 1)):
        cut, start = [], 0
        for k in range(1, len(ordered)):
            if mask >> (k - 1) & 1:
                cut.append(ordered[start:k])
                start = k
        cut.append(ordered[start:])
        if all(len(rows) == 1 or len(rows) * max(rows) <= budget for rows in cut):
            cuts.append(cost(cut))
    assert cost([[len(sequences[i]) for i in b.rows] for b in batches]) == min(cuts)
