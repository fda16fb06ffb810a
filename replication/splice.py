"""The splice test: does the model still work when layer L's output is the SAE's reconstruction?

The model scores each captured sequence (prompt + generated tokens) three times: clean; with the
hooked layer's output replaced, at every position, by the SAE's reconstruction of it; and with that
output replaced by zeros. Cross-entropy is the mean next-token loss over every predicted position
of every sequence. CE loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean): 1 means the
reconstruction is as good as the real activations, 0 means no better than deleting them.

Layers 0..L see the same tokens in all three conditions, so a ``LayerScorer`` runs them once per
sequence and keeps layer L's output; each condition then runs only layers L+1.. and the head on
that output, replaced as the condition says. The clean and zero-ablated CE depend on the sequences
and the model alone: a scorer computes each once, for every SAE trained on the same capture.
``cross_entropy`` is the plain route -- one whole forward pass per sequence and condition, the
layer's output replaced by a hook -- which the scorer is tested against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from replication.errors import ReplicationError
from replication.hooks import (
    BATCH_TOKENS,
    Replace,
    cached_kv,
    decoder_layer,
    expanded_cache,
    input_device,
    last_call_hook,
    prefix_to_share,
    replaced_output,
    right_padded,
)
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


@dataclass
class _Batch:
    rows: list[int]
    """Indices of its sequences in the scorer's list."""
    lengths: list[int]
    """Each row's fed tokens: its own (after the shared prefix) but the last, which predicts nothing."""
    attention_mask: torch.Tensor
    """(batch, shared + T): the shared prefix, then the row's fed tokens, right-padded (a causal
    model's real positions never see the padding after them)."""
    hidden: torch.Tensor
    """(batch, T, d): layer L's output."""
    targets: torch.Tensor
    """The tokens the rows' fed positions predict, row after row (sum of ``lengths``)."""


@dataclass
class _Prefix:
    input_ids: torch.Tensor
    """(1, P): the tokens every sequence starts with."""
    hidden: torch.Tensor
    """(1, P, d): layer L's output on them."""
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Keys and values of layers 0..L on them: what every sequence's later tokens attend to."""


HEAD_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
"""Config fields with which a causal LM's own forward changes the logits after its head."""


def plain_head(model: PreTrainedModel) -> None:
    """The scorer runs the output embedding on the final norm's output itself, as a Llama-style
    model's forward does; a model whose forward then rescales or caps the logits is refused."""
    for name in HEAD_MODIFIERS:
        if getattr(model.config, name, None) not in (None, 1, 1.0):
            raise ReplicationError(f"the splice test scores a plain LM head; this model's config sets {name}")


class LayerScorer:
    """``sequences`` (each of 2 tokens or more) run once through layers 0..``layer`` of ``model``;
    ``cross_entropy(replace)`` then scores them with layer ``layer``'s output replaced, running only
    the later layers, the final norm and the head. Sequences of similar length share a batch; a
    sequence's last token, which predicts nothing, is not fed, and the head runs on the predicting
    positions only, not on the padding.

    Tokens every sequence starts with (a chat template's system prompt: ``SHARED_PREFIX`` or more)
    are computed once: their layer states and keys and values are the same in every sequence, so each
    sequence's own tokens attend to one cached copy, and the predictions made on the prefix count once
    per sequence."""

    def __init__(
        self,
        model: PreTrainedModel,
        sequences: Sequence[Sequence[int]],
        layer: int,
        batch_tokens: int = BATCH_TOKENS,
    ) -> None:
        if any(len(ids) < 2 for ids in sequences):
            raise ValueError("every scored sequence needs 2 tokens or more")
        self.model = model
        self.layer = layer
        self.sequences = [list(ids) for ids in sequences]
        self.tokens = sum(len(ids) - 1 for ids in self.sequences)
        device = input_device(model)
        module = decoder_layer(model, layer)
        base = model.get_submodule("model")
        plain_head(model)
        self.shared = prefix_to_share(model, self.sequences)
        """Leading tokens computed once for all sequences (0: none)."""
        self._prefix: _Prefix | None = None
        before = slice(0, layer + 1)
        if self.shared:
            ids = torch.tensor([self.sequences[0][: self.shared]], device=device)
            with only_layers(model, before), last_call_hook(module) as store, torch.no_grad():
                out = base(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)
            assert store.hidden is not None
            self._prefix = _Prefix(ids, store.hidden, cached_kv(out.past_key_values, before))
        tails = [ids[self.shared :] for ids in self.sequences]
        self._firsts = [tail[0] for tail in tails]
        """Each sequence's first own token, which the prefix's last position predicts."""
        fed = [tail[:-1] for tail in tails]
        self._batches: list[_Batch] = []
        feeding = [i for i, ids in enumerate(fed) if ids]  # with a prefix, a 1-token tail feeds nothing
        for padded in right_padded([fed[i] for i in feeding], batch_tokens):
            rows = [feeding[r] for r in padded.rows]
            prefix_mask = torch.ones((len(rows), self.shared), dtype=torch.long)
            mask = torch.cat([prefix_mask, padded.attention_mask], dim=1).to(device)
            cache = expanded_cache(self._prefix.kv, len(rows)) if self._prefix is not None else None
            with only_layers(model, before), last_call_hook(module) as store, torch.no_grad():
                base(
                    input_ids=padded.input_ids.to(device),
                    attention_mask=mask,
                    past_key_values=cache,
                    use_cache=cache is not None,
                )
            assert store.hidden is not None
            targets = torch.tensor([t for i in rows for t in tails[i][1:]], device=device)
            self._batches.append(_Batch(rows, padded.lengths, mask, store.hidden, targets))

    def cross_entropy(self, replace: Replace | None) -> tuple[float, int]:
        """What ``cross_entropy(model, sequences, layer, replace)`` computes: the mean next-token
        cross-entropy in nats and the number of predicted tokens."""
        base, head = self.model.get_submodule("model"), self.model.get_output_embeddings()
        assert isinstance(head, nn.Module)
        after = slice(self.layer + 1, None)
        common, kv, last = 0.0, [], None
        with only_layers(self.model, after), torch.no_grad():
            if self._prefix is not None:  # the prefix's own predictions, the same in every sequence
                prefix = self._prefix
                hidden = prefix.hidden if replace is None else replace(prefix.hidden)
                out = base(inputs_embeds=hidden, past_key_values=DynamicCache(), use_cache=True)
                logits = head(out.last_hidden_state[0]).float()
                common = F.cross_entropy(logits[:-1], prefix.input_ids[0, 1:], reduction="sum").item()
                last = F.log_softmax(logits[-1], dim=-1)  # predicts each sequence's first own token
                kv = prefix.kv + cached_kv(out.past_key_values, after)
            sums = {
                i: common - (last[self._firsts[i]].item() if last is not None else 0.0)
                for i in range(len(self.sequences))
            }
            for batch in self._batches:
                hidden = batch.hidden if replace is None else replace(batch.hidden)
                cache = expanded_cache(kv, len(batch.rows)) if kv else None
                states = base(
                    inputs_embeds=hidden,
                    attention_mask=batch.attention_mask,
                    past_key_values=cache,
                    use_cache=cache is not None,
                ).last_hidden_state
                predicting = torch.cat([states[row, :n] for row, n in enumerate(batch.lengths)])
                losses = F.cross_entropy(head(predicting).float(), batch.targets, reduction="none")
                for i, own in zip(batch.rows, losses.split(batch.lengths), strict=True):
                    sums[i] += own.sum().item()
        # Summed in sequence order, as the one-pass-per-sequence route does.
        total = 0.0
        for i in range(len(self.sequences)):
            total += sums[i]
        return total / self.tokens, self.tokens

    @cached_property
    def clean(self) -> float:
        return self.cross_entropy(None)[0]

    @cached_property
    def zero(self) -> float:
        """``cross_entropy(zero_replacement)``, from one pass: with the layer's output zeroed at every
        position, the later layers never see a token, so their states -- and the logits -- depend on
        the position alone, the same in every sequence. The longest sequence's positions give every
        position's logits; each sequence is scored against its own tokens."""
        base, head = self.model.get_submodule("model"), self.model.get_output_embeddings()
        assert isinstance(head, nn.Module)
        like = self._batches[0].hidden if self._batches else self._prefix.hidden  # type: ignore[union-attr]
        longest = max(len(ids) for ids in self.sequences) - 1
        with only_layers(self.model, slice(self.layer + 1, None)), torch.no_grad():
            zeros = torch.zeros((1, longest, like.shape[-1]), dtype=like.dtype, device=like.device)
            logp = F.log_softmax(head(base(inputs_embeds=zeros).last_hidden_state[0]).float(), dim=-1)
        total = 0.0
        for ids in self.sequences:
            positions = torch.arange(len(ids) - 1, device=logp.device)
            total -= logp[positions, torch.tensor(ids[1:], device=logp.device)].sum().item()
        return total / self.tokens


def sae_replacement(sae: SparseAutoencoder) -> Replace:
    """The SAE's reconstruction of a (batch, seq, d) hidden state, in that state's dtype and device."""

    def replace(hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(sae.encoder.weight.device, torch.float32)
        x_hat: torch.Tensor = sae(x.reshape(-1, x.shape[-1])).x_hat
        return x_hat.reshape(hidden.shape).to(hidden.device, hidden.dtype)

    return replace


def zero_replacement(hidden: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(hidden)


def scorable(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """The sequences that predict at least one token."""
    return [list(ids) for ids in sequences if len(ids) >= 2]


def splice_result(scorer: LayerScorer, sae: SparseAutoencoder) -> dict[str, Any]:
    """CE clean, with the SAE spliced in, with the layer zero-ablated, and the CE loss recovered;
    the clean and zero-ablated CE as ``scorer`` holds them (computed on first use)."""
    device = input_device(scorer.model)
    sae = sae.to(device).eval()
    clean = scorer.clean
    spliced, _ = scorer.cross_entropy(sae_replacement(sae))
    zero = scorer.zero
    gap = zero - clean
    return {
        "sequences": len(scorer.sequences),
        "tokens": scorer.tokens,
        "ce_clean": clean,
        "ce_sae": spliced,
        "ce_zero": zero,
        "ce_loss_recovered": (zero - spliced) / gap if gap != 0 else None,
        "scored": "every next-token prediction of prompt + generated tokens, all positions replaced",
    }


def splice_test(
    model: PreTrainedModel, sae: SparseAutoencoder, sequences: Sequence[Sequence[int]], layer: int
) -> dict[str, Any]:
    """CE clean, with the SAE spliced in, with the layer zero-ablated, and the CE loss recovered
    (sequences of fewer than 2 tokens predict nothing and are left out)."""
    return splice_result(LayerScorer(model, scorable(sequences), layer), sae)
