"""The splice test: does the model still work when layer L's output is the SAE's reconstruction?

CE loss recovered = (CE_ablated - CE_sae) / (CE_ablated - CE_clean), the layer's output ablated to zeros
or to its mean, over every next-token prediction of the captured sequences, and over the predictions
made at the positions the samples hold (docs/method.md). ``cross_entropy`` is the plain route, one pass
per sequence and condition; ``LayerScorer`` computes the same with less work and is tested against it
(what each of its savings is worth: benchmarks/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from replication.errors import ReplicationError
from replication.model.batching import BATCH_TOKENS, sorted_batches
from replication.model.hooks import (
    Replace,
    cache_kwargs,
    decoder_layer,
    input_device,
    last_call_hook,
    only_layers,
    replaced_output,
    returned_cache,
)
from replication.sae.autoencoder import SparseAutoencoder


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


SHARED_PREFIX = 4
"""Leading tokens all sequences must share for them to be computed once (fewer: no gain)."""


def prefix_to_share(model: PreTrainedModel, sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each one token of its own: 0 when fewer
    than ``SHARED_PREFIX``, or for a model with sliding-window attention layers (whose cache keeps a
    window of its own, so one prefix cannot be handed to every sequence in a plain ``DynamicCache``)."""
    if not sequences or getattr(model.config, "sliding_window", None) is not None:
        return 0
    shortest, length = min(len(ids) for ids in sequences), 0
    while length < shortest - 1 and len({ids[length] for ids in sequences}) == 1:
        length += 1
    return length if length >= SHARED_PREFIX else 0


HEAD_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
"""Config fields with which a causal LM's own forward changes the logits after its head."""


def plain_head(model: PreTrainedModel) -> None:
    """The scorer runs the output embedding on the final norm's output itself (on the predicting
    positions only), as a Llama-style model's forward does; a model whose forward then rescales or caps
    the logits is refused."""
    for name in HEAD_MODIFIERS:
        if getattr(model.config, name, None) not in (None, 1, 1.0):
            raise ReplicationError(f"the splice test scores a plain LM head; this model's config sets {name}")


KV = list[tuple[torch.Tensor, torch.Tensor]]
"""Keys and values per decoder layer, batch 1."""


def _kv(cache: Any, layers: slice) -> KV:
    """The keys and values a forward pass left in its ``DynamicCache``, for ``layers``."""
    return [(layer.keys, layer.values) for layer in cache.layers[layers]]


def _for_rows(kv: KV, rows: int) -> DynamicCache:
    """A cache holding ``kv`` for each of ``rows`` rows (expanded, not copied)."""
    return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kv])


@dataclass
class SharedPrefix:
    """The tokens every sequence starts with, computed once: their layer-L states and the keys and
    values of layers 0..L, which every sequence's own tokens attend to."""

    input_ids: torch.Tensor
    """(1, P)."""
    hidden: torch.Tensor
    """(1, P, d): layer L's output on them."""
    kv: KV


@dataclass
class _Batch:
    rows: list[int]
    """Indices of its sequences in the scorer's list."""
    lengths: list[int]
    """Each row's fed tokens: its own (after the shared prefix) but the last, which predicts nothing."""
    attention_mask: torch.Tensor
    """(batch, P + T): the shared prefix, then the row's fed tokens, right-padded."""
    hidden: torch.Tensor
    """(batch, T, d): layer L's output."""
    targets: torch.Tensor
    """The tokens the rows' fed positions predict, row after row (sum of ``lengths``)."""


class LayerScorer:
    """``sequences`` (each of 2 tokens or more) run once through layers 0..``layer`` of ``model``;
    ``cross_entropy(replace)`` then scores them with that layer's output replaced, running only the
    later layers, the final norm and the head (on the predicting positions only)."""

    def __init__(
        self, model: PreTrainedModel, sequences: Sequence[Sequence[int]], layer: int, batch_tokens: int = BATCH_TOKENS
    ) -> None:
        # Sequences of similar length share a batch; a sequence's last token, which predicts nothing, is
        # not fed. Tokens every sequence starts with are computed once (SharedPrefix); the predictions
        # made on them count once per sequence.
        if any(len(ids) < 2 for ids in sequences):
            raise ValueError("every scored sequence needs 2 tokens or more")
        self.model = model
        self.layer = layer
        self.batch_tokens = batch_tokens
        self._captured: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._spans: dict[tuple[tuple[int, int], ...], SpanScorer] = {}
        self.sequences = [list(ids) for ids in sequences]
        self.tokens = sum(len(ids) - 1 for ids in self.sequences)
        device = input_device(model)
        module, base = decoder_layer(model, layer), model.get_submodule("model")
        plain_head(model)
        before = slice(0, layer + 1)
        shared = prefix_to_share(model, self.sequences)
        self.prefix: SharedPrefix | None = None
        if shared:
            ids = torch.tensor([self.sequences[0][:shared]], device=device)
            with only_layers(model, before), last_call_hook(module) as store, torch.no_grad():
                out = base(input_ids=ids, **cache_kwargs(base, DynamicCache()))
            assert store.hidden is not None
            self.prefix = SharedPrefix(ids, store.hidden, _kv(returned_cache(out), before))
        tails = [ids[shared:] for ids in self.sequences]
        self._firsts = [tail[0] for tail in tails]
        """Each sequence's first own token, which the prefix's last position predicts."""
        fed = [tail[:-1] for tail in tails]
        feeding = [i for i, ids in enumerate(fed) if ids]  # with a prefix, a 1-token tail feeds nothing
        self._batches: list[_Batch] = []
        for padded in sorted_batches([fed[i] for i in feeding], batch_tokens):
            rows = [feeding[r] for r in padded.rows]
            mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), padded.attention_mask], dim=1)
            cache = _for_rows(self.prefix.kv, len(rows)) if self.prefix is not None else None
            with only_layers(model, before), last_call_hook(module) as store, torch.no_grad():
                base(
                    input_ids=padded.input_ids.to(device),
                    attention_mask=mask.to(device),
                    **cache_kwargs(base, cache),
                )
            assert store.hidden is not None
            targets = torch.tensor([t for i in rows for t in tails[i][1:]], device=device)
            self._batches.append(_Batch(rows, padded.lengths, mask.to(device), store.hidden, targets))

    def cross_entropy(self, replace: Replace | None) -> tuple[float, int]:
        """What ``cross_entropy(model, sequences, layer, replace)`` computes: the mean next-token
        cross-entropy in nats and the number of predicted tokens."""
        base, head = self.model.get_submodule("model"), self.model.get_output_embeddings()
        assert isinstance(head, torch.nn.Module)
        after = slice(self.layer + 1, None)
        common, kv, last = 0.0, [], None
        with only_layers(self.model, after), torch.no_grad():
            if self.prefix is not None:  # the prefix's own predictions, the same in every sequence
                hidden = self.prefix.hidden if replace is None else replace(self.prefix.hidden)
                out = base(inputs_embeds=hidden, **cache_kwargs(base, DynamicCache()))
                logits = head(out.last_hidden_state[0]).float()
                common = F.cross_entropy(logits[:-1], self.prefix.input_ids[0, 1:], reduction="sum").item()
                last = F.log_softmax(logits[-1], dim=-1)  # predicts each sequence's first own token
                kv = self.prefix.kv + _kv(returned_cache(out), after)
            sums = [common - (last[first].item() if last is not None else 0.0) for first in self._firsts]
            for batch in self._batches:
                hidden = batch.hidden if replace is None else replace(batch.hidden)
                cache = _for_rows(kv, len(batch.rows)) if kv else None
                states = base(
                    inputs_embeds=hidden,
                    attention_mask=batch.attention_mask,
                    **cache_kwargs(base, cache),
                ).last_hidden_state
                predicting = torch.cat([states[row, :n] for row, n in enumerate(batch.lengths)])  # no padding
                losses = F.cross_entropy(head(predicting).float(), batch.targets, reduction="none")
                for i, own in zip(batch.rows, losses.split(batch.lengths), strict=True):
                    sums[i] += own.sum().item()
        total = 0.0
        for value in sums:  # in sequence order, as the one-pass-per-sequence route sums
            total += value
        return total / self.tokens, self.tokens

    @cached_property
    def clean(self) -> float:
        return self.cross_entropy(None)[0]

    @cached_property
    def zero(self) -> float:
        """``cross_entropy(zero_replacement)``."""
        return self._constant(torch.zeros_like(self.mean_state))

    @cached_property
    def mean(self) -> float:
        """``cross_entropy(mean_replacement(self.mean_state))``."""
        return self._constant(self.mean_state)

    @cached_property
    def mean_state(self) -> torch.Tensor:
        """The layer's output averaged over every fed position (a shared prefix's once per sequence)."""
        total, count = None, 0
        if self.prefix is not None:
            total = self.prefix.hidden[0].double().sum(dim=0) * len(self.sequences)
            count = self.prefix.hidden.shape[1] * len(self.sequences)
        for batch in self._batches:
            for row, n in enumerate(batch.lengths):
                own = batch.hidden[row, :n].double().sum(dim=0)
                total = own if total is None else total + own
                count += n
        assert total is not None
        like = self._batches[0].hidden if self._batches else self.prefix.hidden  # type: ignore[union-attr]
        return (total / count).to(like.dtype)

    def at(self, spans: Sequence[tuple[int, int]]) -> SpanScorer:
        """The scorer of the predictions made at ``spans`` of these sequences, built once."""
        key = tuple(spans)
        if key not in self._spans:
            self._spans[key] = SpanScorer(self.model, self.sequences, spans, self.layer, self.batch_tokens)
        return self._spans[key]

    def captured(self, spans: Sequence[tuple[int, int]], mean: torch.Tensor) -> dict[str, Any]:
        """The CE at ``spans``, clean and ablated to zeros and to ``mean``, computed once for every SAE
        of the same samples."""
        key = (tuple(spans), mean.cpu().double().numpy().tobytes())
        if key not in self._captured:
            replaces = {"clean": None, "zero": zero_replacement, "mean": mean_replacement(mean)}
            scores = {n: self.at(spans).cross_entropy(r) for n, r in replaces.items()}
            self._captured[key] = {"tokens": scores["clean"][1], **{f"ce_{n}": ce for n, (ce, _) in scores.items()}}
        return dict(self._captured[key])

    def _constant(self, state: torch.Tensor) -> float:
        """``cross_entropy`` with the layer's output ``state`` at every position, from one pass over the
        longest sequence's positions: the later layers then never see a token, so their states and the
        logits depend on the position alone, the same in every sequence, each scored on its own tokens."""
        base, head = self.model.get_submodule("model"), self.model.get_output_embeddings()
        assert isinstance(head, torch.nn.Module)
        longest = max(len(ids) for ids in self.sequences) - 1
        with only_layers(self.model, slice(self.layer + 1, None)), torch.no_grad():
            states = state.expand(1, longest, state.shape[-1]).contiguous()
            logp = F.log_softmax(head(base(inputs_embeds=states).last_hidden_state[0]).float(), dim=-1)
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


def mean_replacement(mean: torch.Tensor) -> Replace:
    """``mean`` (d,) at every position of a (batch, seq, d) hidden state."""

    def replace(hidden: torch.Tensor) -> torch.Tensor:
        return mean.to(hidden.device, hidden.dtype).expand(hidden.shape).contiguous()

    return replace


def captured_cross_entropy(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    spans: Sequence[tuple[int, int]],
    layer: int,
    replace: Replace | None,
) -> tuple[float, int]:
    """(mean cross-entropy, predictions) of the predictions made at each sequence's positions [a, b),
    with layer ``layer``'s output replaced at those positions only; one forward pass per sequence."""
    device = input_device(model)
    total, count = 0.0, 0
    for ids, (a, b) in zip(sequences, spans, strict=True):

        def there(hidden: torch.Tensor, a: int = a, b: int = b) -> torch.Tensor:
            assert replace is not None
            out = hidden.clone()
            out[:, a:b] = replace(hidden[:, a:b])
            return out

        with replaced_output(decoder_layer(model, layer), None if replace is None else there), torch.no_grad():
            tokens = torch.tensor([list(ids)], device=device)
            logits = model(input_ids=tokens).logits[0, a:b].float()
            total += F.cross_entropy(logits, tokens[0, a + 1 : b + 1], reduction="sum").item()
            count += b - a
    return total / count, count


@dataclass
class _SpanBatch:
    widths: list[int]
    """Each row's span width, b - a."""
    hidden: torch.Tensor
    """(batch, m, d): layer L's clean output at each row's span, right-padded."""
    position_ids: torch.Tensor
    """(batch, m): a, a + 1, ... for each row."""
    attention_mask: torch.Tensor
    """(batch, C + m): each row's context [0, a) at the end of the C cached positions, then its span."""
    kv: KV | None
    """Every layer's keys and values of the clean positions [0, C); None when C is 0."""
    targets: torch.Tensor
    """The tokens the rows' span positions predict, row after row (sum of ``widths``)."""


class SpanScorer:
    """What ``captured_cross_entropy`` computes, with less work. The positions before each span, which
    the replacement cannot change, run clean once through every layer, kept as a KV cache; layers 0..L
    run once on the spans. Each score then runs only layers L+1.. on the spans, in batches of similar
    length, and the head on their real positions."""

    def __init__(
        self,
        model: PreTrainedModel,
        sequences: Sequence[Sequence[int]],
        spans: Sequence[tuple[int, int]],
        layer: int,
        batch_tokens: int = BATCH_TOKENS,
    ) -> None:
        self.model, self.layer = model, layer
        self.tokens = sum(b - a for a, b in spans)
        self._order: list[int] = []
        self._batches: list[_SpanBatch] = []
        device = input_device(model)
        module, base = decoder_layer(model, layer), model.get_submodule("model")
        plain_head(model)
        spanned = [list(ids[: b + 1]) for ids, (_, b) in zip(sequences, spans, strict=True)]
        for padded in sorted_batches(spanned, batch_tokens):
            ids = padded.input_ids.to(device)
            starts = torch.tensor([spans[i][0] for i in padded.rows], device=device)
            widths = [spans[i][1] - spans[i][0] for i in padded.rows]
            context, m = int(starts.max()), max(widths)
            pairs = list(zip(starts.tolist(), widths, strict=True))
            # Each row's context ends where the cache ends, so that its span follows it on the cache's
            # positions as on its own (a sliding window measures distances there); left-padded.
            before = torch.zeros((len(widths), context), dtype=torch.long, device=device)
            own = torch.zeros((len(widths), m), dtype=torch.long, device=device)
            mask = torch.zeros((len(widths), context + m), dtype=torch.long, device=device)
            for row, (a, w) in enumerate(pairs):
                before[row, context - a :] = ids[row, :a]
                own[row, :w] = ids[row, a : a + w]
                mask[row, context - a : context + w] = 1
            kv = None
            if context:
                positions = (torch.arange(context, device=device) - (context - starts)[:, None]).clamp(min=0)
                with torch.no_grad():
                    out = base(
                        input_ids=before,
                        attention_mask=mask[:, :context],
                        position_ids=positions,
                        **cache_kwargs(base, DynamicCache()),
                    )
                kv = _kv(returned_cache(out), slice(None))
            positions = starts[:, None] + torch.arange(m, device=device)
            with only_layers(model, slice(0, layer + 1)), last_call_hook(module) as store, torch.no_grad():
                base(input_ids=own, attention_mask=mask, position_ids=positions, **cache_kwargs(base, self._cache(kv)))
            assert store.hidden is not None
            targets = torch.cat([ids[row, a + 1 : a + w + 1] for row, (a, w) in enumerate(pairs)])
            self._order += padded.rows
            self._batches.append(_SpanBatch(widths, store.hidden, positions, mask, kv, targets))

    @staticmethod
    def _cache(kv: KV | None) -> DynamicCache | None:
        """A fresh cache of ``kv``: a pass appends to its own copy, never to the kept tensors."""
        return None if kv is None else DynamicCache(kv)

    def cross_entropy(self, replace: Replace | None) -> tuple[float, int]:
        """The mean cross-entropy of the predictions made at the spans and their number, layer L's
        output replaced as ``replace`` says there only."""
        base, head = self.model.get_submodule("model"), self.model.get_output_embeddings()
        assert isinstance(head, torch.nn.Module)
        sums: list[float] = []
        with only_layers(self.model, slice(self.layer + 1, None)), torch.no_grad():
            for batch in self._batches:
                hidden = batch.hidden if replace is None else replace(batch.hidden)
                states = base(
                    inputs_embeds=hidden,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    **cache_kwargs(base, self._cache(batch.kv)),
                ).last_hidden_state
                scored = torch.cat([states[row, :w] for row, w in enumerate(batch.widths)])
                losses = F.cross_entropy(head(scored).float(), batch.targets, reduction="none")
                sums += [own.sum().item() for own in losses.split(batch.widths)]
        total = 0.0
        for _, value in sorted(zip(self._order, sums, strict=True)):  # in sequence order, as the plain route sums
            total += value
        return total / self.tokens, self.tokens


def captured_spans(sequences: Sequence[Sequence[int]], lengths: Sequence[int]) -> list[tuple[int, int]]:
    """The positions each sample holds: its last ``length`` fed positions (a decode step's one, a
    prefill's whole prompt), those the SAE's rows come from."""
    return [(len(ids) - 1 - n, len(ids) - 1) for ids, n in zip(sequences, lengths, strict=True)]


def recovered(ablated: float, spliced: float, clean: float) -> float | None:
    gap = ablated - clean
    return (ablated - spliced) / gap if gap != 0 else None


def scorable(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """The sequences that predict at least one token."""
    return [list(ids) for ids in sequences if len(ids) >= 2]


def splice_result(
    scorer: LayerScorer, sae: SparseAutoencoder, spans: Sequence[tuple[int, int]], captured_mean: torch.Tensor
) -> dict[str, Any]:
    """CE clean, with the SAE spliced in, and with the layer ablated to zeros and to its mean, with the
    CE loss recovered against each: at every position (the scorer's, computed on first use), and at the
    positions the samples hold (``spans``; ablated to ``captured_mean``, the mean of their rows)."""
    device = input_device(scorer.model)
    sae = sae.to(device).eval()
    clean, zero, mean = scorer.clean, scorer.zero, scorer.mean
    spliced, _ = scorer.cross_entropy(sae_replacement(sae))
    vocab = int(scorer.model.get_output_embeddings().weight.shape[0])
    if all(span == (0, len(ids) - 1) for span, ids in zip(spans, scorer.sequences, strict=True)):
        # The samples hold every fed position (a per-token capture): the same score as everywhere.
        there = {"tokens": scorer.tokens, "ce_clean": clean, "ce_zero": zero, "ce_mean": mean, "ce_sae": spliced}
    else:
        there = scorer.captured(spans, captured_mean)
        there["ce_sae"], _ = scorer.at(spans).cross_entropy(sae_replacement(sae))
    return {
        "sequences": len(scorer.sequences),
        "tokens": scorer.tokens,
        "ce_clean": clean,
        "ce_sae": spliced,
        "ce_zero": zero,
        "ce_mean": mean,
        "ce_uniform": math.log(vocab),
        "vocab_size": vocab,
        "ce_loss_recovered": recovered(zero, spliced, clean),
        "ce_loss_recovered_mean": recovered(mean, spliced, clean),
        "scored": "every next-token prediction of prompt + generated tokens, all positions replaced",
        **{f"captured_{key}": value for key, value in there.items()},
        "captured_ce_loss_recovered": recovered(there["ce_zero"], there["ce_sae"], there["ce_clean"]),
        "captured_ce_loss_recovered_mean": recovered(there["ce_mean"], there["ce_sae"], there["ce_clean"]),
    }


def splice_test(
    model: PreTrainedModel, sae: SparseAutoencoder, sequences: Sequence[Sequence[int]], layer: int
) -> dict[str, Any]:
    """``splice_result`` with each sequence's samples at all its fed positions (sequences of fewer than
    2 tokens predict nothing and are left out)."""
    scorer = LayerScorer(model, scorable(sequences), layer)
    spans = captured_spans(scorer.sequences, [len(ids) - 1 for ids in scorer.sequences])
    return splice_result(scorer, sae, spans, scorer.mean_state)
