"""The splice test: does the model still work when layer L's output is the SAE's reconstruction?

The model scores each captured sequence (prompt + generated tokens) three times: clean; with the
hooked layer's output replaced, at every position, by the SAE's reconstruction of it; and with that
output replaced by zeros. Cross-entropy is the mean next-token loss over every predicted position
of every sequence. CE loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean): 1 means the
reconstruction is as good as the real activations, 0 means no better than deleting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from replication.hooks import Replace, decoder_layer, input_device, replaced_output
from replication.sae import SparseAutoencoder


def cross_entropy(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], layer: int, replace: Replace | None
) -> tuple[float, int]:
    """(mean next-token cross-entropy in nats, number of predicted tokens) over ``sequences``, one
    forward pass each, with layer ``layer``'s output replaced as ``replace`` says."""
    device = input_device(model)
    total, count = 0.0, 0
    with replaced_output(decoder_layer(model, layer), replace), torch.no_grad():
        for ids in sequences:
            tokens = torch.tensor([list(ids)], device=device)
            logits = model(input_ids=tokens).logits[0, :-1].float()
            total += F.cross_entropy(logits, tokens[0, 1:], reduction="sum").item()
            count += tokens.shape[1] - 1
    return total / count, count


def sae_replacement(sae: SparseAutoencoder) -> Replace:
    """The SAE's reconstruction of a (batch, seq, d) hidden state, in that state's dtype and device."""

    def replace(hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(sae.encoder.weight.device, torch.float32)
        x_hat: torch.Tensor = sae(x.reshape(-1, x.shape[-1])).x_hat
        return x_hat.reshape(hidden.shape).to(hidden.device, hidden.dtype)

    return replace


def zero_replacement(hidden: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(hidden)


def splice_test(
    model: PreTrainedModel, sae: SparseAutoencoder, sequences: Sequence[Sequence[int]], layer: int
) -> dict[str, Any]:
    """CE clean, with the SAE spliced in, with the layer zero-ablated, and the CE loss recovered."""
    scorable = [ids for ids in sequences if len(ids) >= 2]
    device = input_device(model)
    sae = sae.to(device).eval()
    clean, tokens = cross_entropy(model, scorable, layer, None)
    spliced, _ = cross_entropy(model, scorable, layer, sae_replacement(sae))
    zero, _ = cross_entropy(model, scorable, layer, zero_replacement)
    gap = zero - clean
    return {
        "sequences": len(scorable),
        "tokens": tokens,
        "ce_clean": clean,
        "ce_sae": spliced,
        "ce_zero": zero,
        "ce_loss_recovered": (zero - spliced) / gap if gap != 0 else None,
        "scored": "every next-token prediction of prompt + generated tokens, all positions replaced",
    }
