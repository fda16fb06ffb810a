"""What the feature cards need from the model: every position's hooked-layer state of each captured
sequence, each token as text, and the read-out of a direction through the final norm and unembedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.capture import fed_states


@dataclass
class TokenStates:
    """The captured sequences as the model reads them, position by position."""

    tokens: list[list[str]]
    """Per sample, every token of prompt + answer as text (the last one was never fed back)."""
    states: list[torch.Tensor]
    """Per sample, (T - 1, d) float32: the hooked layer's output at every position the model fed
    itself, from a forward pass over the sequence without its last token (``capture.fed_states``)."""
    read_out: Callable[[torch.Tensor], torch.Tensor]
    """(d, n) directions -> (vocab, n) logits: unembedding . (final norm's gain * direction)."""
    token_text: Callable[[int], str]


def token_states(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[Sequence[int]],
    layer: int,
    states: list[torch.Tensor] | None = None,
) -> TokenStates:
    """Every sequence (prompt + generated ids, as captured) through the model once, unless its
    ``states`` (``capture.fed_states`` of these sequences) are given."""
    norm = model.get_submodule("model.norm").get_parameter("weight").detach()
    output = model.get_output_embeddings()
    assert isinstance(output, torch.nn.Linear)
    unembed = output.weight.detach()

    def read_out(directions: torch.Tensor) -> torch.Tensor:
        scaled = directions.to(norm.device, norm.dtype) * norm[:, None]
        with torch.inference_mode():
            logits: torch.Tensor = unembed @ scaled
        return logits.to("cpu", torch.float32)

    def text(token: int) -> str:
        """The token as text; a piece of a multi-byte character as its vocabulary entry (e.g. <0xE2>)."""
        decoded = str(tokenizer.decode([token], clean_up_tokenization_spaces=False))
        return decoded if "\ufffd" not in decoded else str(tokenizer.convert_ids_to_tokens(token))

    return TokenStates(
        tokens=[[text(t) for t in ids] for ids in sequences],
        states=fed_states(model, layer, sequences) if states is None else states,
        read_out=read_out,
        token_text=text,
    )
