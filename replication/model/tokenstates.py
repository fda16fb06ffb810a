"""Every position's hooked-layer state of a captured sequence, its tokens as text, and the read-out of
SAE directions through the final norm and the unembedding: what the per_token ablation and the cards need."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.model.batching import BATCH_TOKENS, sorted_batches
from replication.model.hooks import decoder_layer, input_device, last_call_hook, only_layers


def fed_states(
    model: PreTrainedModel, layer: int, sequences: Sequence[Sequence[int]], batch_tokens: int = BATCH_TOKENS
) -> list[torch.Tensor]:
    """Per sequence, (T - 1, d) float32 on the CPU: the layer's output at every position but the last
    (never fed back), from passes through blocks 0..layer only."""
    # Sequences of similar length share a batch, padded on the right: a causal model's real positions
    # never see the padding after them.
    device = input_device(model)
    fed = [list(ids[:-1]) for ids in sequences]
    module = decoder_layer(model, layer)
    states: dict[int, torch.Tensor] = {}
    for batch in sorted_batches(fed, batch_tokens):
        with only_layers(model, slice(0, layer + 1)), last_call_hook(module) as store, torch.inference_mode():
            model.get_submodule("model")(
                input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)
            )
        assert store.hidden is not None
        kept = store.hidden.to("cpu", torch.float32)
        for row, (i, n) in enumerate(zip(batch.rows, batch.lengths, strict=True)):
            states[i] = kept[row, :n].clone()
    return [states[i] for i in range(len(fed))]


def token_text(tokenizer: PreTrainedTokenizerBase, token: int) -> str:
    """The token as text; a piece of a multi-byte character as its vocabulary entry (e.g. <0xE2>)."""
    decoded = str(tokenizer.decode([token], clean_up_tokenization_spaces=False))
    return decoded if "\ufffd" not in decoded else str(tokenizer.convert_ids_to_tokens(token))


def read_out(model: PreTrainedModel, directions: torch.Tensor) -> torch.Tensor:
    """(d, n) directions -> (vocab, n) logits on the CPU: unembedding . (final norm's gain * direction).
    Approximate by design: the later layers are skipped and the norm's division by the RMS is not."""
    norm = model.get_submodule("model.norm").get_parameter("weight").detach()
    output = model.get_output_embeddings()
    assert isinstance(output, torch.nn.Linear)
    scaled = directions.to(norm.device, norm.dtype) * norm[:, None]
    with torch.inference_mode():
        logits: torch.Tensor = output.weight.detach() @ scaled
    return logits.to("cpu", torch.float32)


def extremes(logits: torch.Tensor, k: int) -> tuple[list[list[int]], list[list[int]]]:
    """Per column of ``logits`` (vocab, n): the ids of its k largest values, largest first, and of its k
    smallest, smallest first, as a stable descending sort and its reverse order them."""
    # Only the values at or beyond each column's k-th are sorted; ties: lower id first among the
    # largest, higher id first among the smallest.
    largest, smallest = [], []
    top, bottom = logits.topk(k, dim=0).values[-1], logits.topk(k, dim=0, largest=False).values[-1]
    for column in range(logits.shape[1]):
        values = logits[:, column]
        high = torch.nonzero(values >= top[column]).flatten().tolist()
        low = torch.nonzero(values <= bottom[column]).flatten().tolist()
        picked = values[high].tolist(), values[low].tolist()
        largest.append([i for _, i in sorted(zip((-v for v in picked[0]), high, strict=True))][:k])
        smallest.append([i for _, i in sorted(zip(picked[1], (-i for i in low), strict=True))][:k])
        smallest[-1] = [-i for i in smallest[-1]]
    return largest, smallest
