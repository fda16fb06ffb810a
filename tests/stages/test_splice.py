"""The splice test: cross-entropy with the hooked layer's output kept, replaced, zeroed or set to its mean."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT
from transformers import AutoConfig, LlamaForCausalLM

from replication import api
from replication.config import RunConfig
from replication.errors import ReplicationError
from replication.evaluation.metrics import METRICS
from replication.experiments.variant import variant_run
from replication.model.batching import sorted_batches
from replication.model.loading import LoadedModel, resolve_device
from replication.rundir.reader import RunData
from replication.sae.autoencoder import SparseAutoencoder
from replication.sae.training import build_sae
from replication.stages.context import Context
from replication.stages.splice import (
    LayerScorer,
    SpanScorer,
    captured_cross_entropy,
    captured_spans,
    cross_entropy,
    mean_replacement,
    prefix_to_share,
    sae_replacement,
    splice_test,
    zero_replacement,
)

SEQUENCES = [[5, 17, 42, 9, 3], [7, 8, 99, 100, 2, 11, 12]]


def manual_ce(loaded: LoadedModel, sequences: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in sequences:
            tokens = torch.tensor([ids])
            logits = loaded.model(input_ids=tokens).logits[0, :-1]
            total += F.cross_entropy(logits, tokens[0, 1:], reduction="sum").item()
            count += len(ids) - 1
    return total / count


def test_clean_cross_entropy_is_the_mean_next_token_loss(tiny_model: LoadedModel) -> None:
    ce, tokens = cross_entropy(tiny_model.model, SEQUENCES, 10, None)
    assert tokens == 4 + 6
    assert ce == pytest.approx(manual_ce(tiny_model, SEQUENCES), rel=1e-6)


def test_identity_replacement_changes_nothing_and_zeros_do(tiny_model: LoadedModel) -> None:
    clean, _ = cross_entropy(tiny_model.model, SEQUENCES, 10, None)
    same, _ = cross_entropy(tiny_model.model, SEQUENCES, 10, lambda h: h.clone())
    zero, _ = cross_entropy(tiny_model.model, SEQUENCES, 10, zero_replacement)
    assert same == clean
    assert abs(zero - clean) > 1e-3
    # The hook is gone afterwards: the model is clean again.
    assert cross_entropy(tiny_model.model, SEQUENCES, 10, None)[0] == clean


def manual_ce_replaced(
    loaded: LoadedModel, sequences: list[list[int]], replace: Callable[[torch.Tensor], torch.Tensor]
) -> float:
    """``manual_ce`` with decoder block 10's hidden-state output replaced by ``replace(hidden)``,
    through a forward hook of this test's own."""

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return replace(output)
        return (replace(output[0]), *output[1:])

    handle = loaded.model.model.layers[10].register_forward_hook(hook)
    try:
        return manual_ce(loaded, sequences)
    finally:
        handle.remove()


def layer_outputs(loaded: LoadedModel, sequences: list[list[int]], layer: int) -> list[torch.Tensor]:
    """Block ``layer``'s output at each sequence's fed positions (all but the last), (T - 1, d), through a
    forward hook of this test's own (the last block's is not a hidden state: the final norm follows)."""
    kept: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        kept.append((output if isinstance(output, torch.Tensor) else output[0])[0, :-1].detach().clone())

    handle = loaded.model.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for ids in sequences:
                loaded.model(torch.tensor([ids]))
    finally:
        handle.remove()
    return kept


def test_captured_positions_are_replaced_and_scored_alone(tiny_model: LoadedModel) -> None:
    """Only positions [a, b) are replaced, and only the predictions made there are scored: over every
    fed position that is the plain route; over the last one alone, the last prediction with the last
    fed position's state zeroed, by a hook of this test's own."""
    everywhere = captured_spans(SEQUENCES, [len(ids) - 1 for ids in SEQUENCES])
    assert everywhere == [(0, 4), (0, 6)]
    for replace in (None, zero_replacement):
        assert captured_cross_entropy(tiny_model.model, SEQUENCES, everywhere, 10, replace) == pytest.approx(
            cross_entropy(tiny_model.model, SEQUENCES, 10, replace), rel=1e-6
        )
    last = captured_spans(SEQUENCES, [1, 1])  # a decode step's sample: the last fed position
    assert last == [(3, 4), (5, 6)]

    def last_zeroed(hidden: torch.Tensor) -> torch.Tensor:
        out = hidden.clone()
        out[:, -2] = 0  # the sequence's last position predicts nothing; the one before is the last fed
        return out

    losses = []
    for ids in SEQUENCES:
        logits = manual_logits(tiny_model, ids, last_zeroed)
        losses.append(F.cross_entropy(logits[-2:-1], torch.tensor(ids[-1:])).item())
    ce, count = captured_cross_entropy(tiny_model.model, SEQUENCES, last, 10, zero_replacement)
    assert count == 2 and ce == pytest.approx(sum(losses) / 2, rel=1e-6)
    assert ce != pytest.approx(captured_cross_entropy(tiny_model.model, SEQUENCES, last, 10, None)[0], rel=1e-3)


@pytest.mark.parametrize("layer", [0, 10, 11])
def test_span_scorer_computes_the_plain_routes_scores(
    tiny_model: LoadedModel, tiny_config: RunConfig, layer: int
) -> None:
    """The clean positions before each span cached, the later layers run on the spans alone: the CE of
    one whole pass per sequence, for spans of one position, of a prompt, and of every fed position,
    mixed in batches whose rows start their spans at different places."""
    sequences = random_sequences(30, seed=100 + layer)
    rng = random.Random(layer)
    spans = []
    for ids in sequences:
        end = len(ids) - 1
        middle = rng.randrange(end) if end > 1 else 0
        spans.append(rng.choice([(end - 1, end), (middle, end), (0, rng.randrange(1, end + 1)), (0, end)]))
    batches = sorted_batches([ids[: b + 1] for ids, (_, b) in zip(sequences, spans, strict=True)], 200)
    assert len(batches) > 3
    assert any(len({spans[i][0] for i in batch.rows} - {0}) > 1 for batch in batches)  # spans start apart
    sae = build_sae(64, tiny_config.train)
    mean = torch.randn(64)
    scorer = SpanScorer(tiny_model.model, sequences, spans, layer, batch_tokens=200)
    for replace in (None, zero_replacement, sae_replacement(sae), mean_replacement(mean), lambda h: 0.5 * h):
        batched = scorer.cross_entropy(replace)
        plain = captured_cross_entropy(tiny_model.model, sequences, spans, layer, replace)
        assert batched[1] == plain[1] == sum(b - a for a, b in spans)
        assert batched[0] == pytest.approx(plain[0], rel=1e-6)


def manual_logits(loaded: LoadedModel, ids: list[int], replace: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One sequence's logits with block 10's output replaced, through a forward hook of this test's own."""

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        return replace(output) if isinstance(output, torch.Tensor) else (replace(output[0]), *output[1:])

    handle = loaded.model.model.layers[10].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return loaded.model(input_ids=torch.tensor([ids])).logits[0]
    finally:
        handle.remove()


def layer_10_outputs(loaded: LoadedModel, sequences: list[list[int]]) -> list[torch.Tensor]:
    """Block 10's output per sequence, (1, T, d): hidden_states[11] (index 0 is the embeddings)."""
    with torch.no_grad():
        return [loaded.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[11] for ids in sequences]


def test_splice_test_reports_ce_loss_recovered(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    sae = build_sae(64, tiny_config.train)
    w_e, b_e = sae.encoder.weight.detach(), sae.encoder.bias.detach()
    w_d, b_d = sae.decoder.weight.detach(), sae.decoder.bias.detach()
    assert sae.decoder_activation == "relu"

    def by_hand(hidden: torch.Tensor) -> torch.Tensor:  # ReLU(W_d ReLU(W_e x + b_e) + b_d), per position
        return torch.relu(torch.relu(hidden @ w_e.T + b_e) @ w_d.T + b_d)

    result = splice_test(tiny_model.model, sae, [*SEQUENCES, [4]], 10)
    assert result["sequences"] == 2  # a one-token sequence predicts nothing and is left out
    assert result["tokens"] == 4 + 6
    clean = manual_ce(tiny_model, SEQUENCES)
    spliced = manual_ce_replaced(tiny_model, SEQUENCES, by_hand)
    zero = manual_ce_replaced(tiny_model, SEQUENCES, torch.zeros_like)
    assert result["ce_clean"] == pytest.approx(clean, rel=1e-6)
    assert result["ce_sae"] == pytest.approx(spliced, rel=1e-5)
    assert result["ce_zero"] == pytest.approx(zero, rel=1e-6)
    assert len({round(clean, 4), round(spliced, 4), round(zero, 4)}) == 3  # three different models
    assert result["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean), rel=1e-4)
    mean_state = torch.cat(layer_outputs(tiny_model, SEQUENCES, 10)).mean(dim=0)
    mean = manual_ce_replaced(tiny_model, SEQUENCES, lambda h: mean_state.expand(h.shape))
    assert result["ce_mean"] == pytest.approx(mean, rel=1e-5)
    assert result["ce_loss_recovered_mean"] == pytest.approx((mean - spliced) / (mean - clean), rel=1e-4)
    # Here the samples hold every fed position: the captured score is the whole one.
    for key in ("ce_clean", "ce_sae", "ce_zero", "ce_mean", "ce_loss_recovered", "ce_loss_recovered_mean"):
        assert result[f"captured_{key}"] == pytest.approx(result[key], rel=1e-4), key


def test_ce_loss_recovered_is_1_for_an_identity_sae(tiny_model: LoadedModel) -> None:
    """z = ReLU([x; -x]), x_hat = z[:d] - z[d:] = x exactly (every other term of the sums is 0)."""
    sae = SparseAutoencoder(64, 128, "linear")
    eye = torch.eye(64)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.encoder.bias.zero_()
        sae.decoder.weight.copy_(torch.cat([eye, -eye], dim=1))
        sae.decoder.bias.zero_()
        for hidden in layer_10_outputs(tiny_model, SEQUENCES):
            x = hidden[0]
            assert (x < 0).any() and (x > 0).any()
            assert torch.equal(sae(x).x_hat, x)
    result = splice_test(tiny_model.model, sae, SEQUENCES, 10)
    assert result["ce_sae"] == result["ce_clean"] != result["ce_zero"]
    assert result["ce_loss_recovered"] == 1.0


def test_ce_loss_recovered_is_0_when_the_sae_reconstructs_zeros(tiny_model: LoadedModel) -> None:
    sae = SparseAutoencoder(64, 128, "linear")
    with torch.no_grad():
        sae.decoder.weight.zero_()
        sae.decoder.bias.zero_()
        for hidden in layer_10_outputs(tiny_model, SEQUENCES):
            assert not sae(hidden[0]).x_hat.any()
    result = splice_test(tiny_model.model, sae, SEQUENCES, 10)
    assert result["ce_sae"] == result["ce_zero"] != result["ce_clean"]
    assert result["ce_loss_recovered"] == 0.0


def test_splice_stage_of_a_run(tiny_run: Path) -> None:
    splice = json.loads((tiny_run / "splice" / "splice.json").read_text())
    records = json.loads((tiny_run / "capture" / "samples.json").read_text())
    assert splice["tokens"] == sum(len(r["token_ids"]) - 1 for r in records)
    assert splice["hook"] == "model.layers.10"


def random_sequences(count: int, seed: int) -> list[list[int]]:
    """Sequences of 2 to 49 tokens of the tiny vocabulary, in no order of length."""
    rng = random.Random(seed)
    return [[rng.randrange(512) for _ in range(rng.randrange(2, 50))] for _ in range(count)]


@pytest.mark.parametrize("layer", [0, 10, 11])
def test_scorer_computes_what_one_pass_per_sequence_computes(
    tiny_model: LoadedModel, tiny_config: RunConfig, layer: int
) -> None:
    """Layers 0..L run once, batched and right-padded, then layers L+1.. per condition: the same CE
    as a whole forward pass per sequence with the layer's output replaced by a hook (layer 11 is
    the last block: only the final norm and the head follow it)."""
    sequences = random_sequences(30, seed=layer)
    sae = build_sae(64, tiny_config.train)
    scorer = LayerScorer(tiny_model.model, sequences, layer, batch_tokens=200)
    batches = sorted_batches([ids[:-1] for ids in sequences], 200)  # what the scorer feeds
    assert len(batches) > 3, "the sequences must be split into several padded batches"
    assert any(len(set(batch.lengths)) > 1 for batch in batches), "a batch must hold padding"
    for replace in (None, zero_replacement, sae_replacement(sae), lambda h: 0.5 * h):
        ce, tokens = scorer.cross_entropy(replace)
        expected, expected_tokens = cross_entropy(tiny_model.model, sequences, layer, replace)
        assert tokens == expected_tokens == sum(len(ids) - 1 for ids in sequences)
        assert ce == pytest.approx(expected, rel=1e-6)
    assert scorer.clean == pytest.approx(cross_entropy(tiny_model.model, sequences, layer, None)[0], rel=1e-6)
    assert scorer.zero == pytest.approx(
        cross_entropy(tiny_model.model, sequences, layer, zero_replacement)[0], rel=1e-6
    )
    states = torch.cat(layer_outputs(tiny_model, sequences, layer))  # every fed position, by a plain pass
    torch.testing.assert_close(scorer.mean_state, states.double().mean(dim=0).float(), rtol=1e-5, atol=1e-6)
    mean = mean_replacement(states.mean(dim=0))
    assert scorer.mean == pytest.approx(cross_entropy(tiny_model.model, sequences, layer, mean)[0], rel=1e-5)


@pytest.mark.parametrize(("layer", "shared"), [(0, 12), (10, 12), (11, 12), (10, 4), (10, 1)])
def test_a_shared_prefix_is_computed_once_with_the_same_result(
    tiny_model: LoadedModel, tiny_config: RunConfig, layer: int, shared: int
) -> None:
    """Sequences that all start with the same tokens (a chat template's system prompt): the prefix
    runs once, each sequence's own tokens attend to its cached keys and values, and the CE is that of
    a whole forward pass per sequence. The shortest sequence is the prefix and one token; fewer than
    SHARED_PREFIX shared tokens take the plain route."""
    rng = random.Random(layer + shared)
    prefix = [rng.randrange(512) for _ in range(shared)]
    tails = [[rng.randrange(512) for _ in range(n)] for n in [1, 2, *(rng.randrange(1, 30) for _ in range(20))]]
    firsts = {tail[0] for tail in tails}
    assert len(firsts) > 1, "the sequences must part right after the prefix"
    sequences = [prefix + tail for tail in tails]
    sae = build_sae(64, tiny_config.train)
    scorer = LayerScorer(tiny_model.model, sequences, layer, batch_tokens=100)
    computed_once = 0 if scorer.prefix is None else scorer.prefix.input_ids.shape[1]
    assert computed_once == (shared if shared >= 4 else 0)  # SHARED_PREFIX tokens or more
    batches = sorted_batches([tail[:-1] for tail in tails if len(tail) > 1], 100)  # what the scorer feeds
    assert len(batches) > 2 and any(len(set(batch.lengths)) > 1 for batch in batches)
    for replace in (None, zero_replacement, sae_replacement(sae), lambda h: 0.5 * h):
        ce, tokens = scorer.cross_entropy(replace)
        expected, expected_tokens = cross_entropy(tiny_model.model, sequences, layer, replace)
        assert tokens == expected_tokens
        assert ce == pytest.approx(expected, rel=1e-6)
    zero, _ = cross_entropy(tiny_model.model, sequences, layer, zero_replacement)
    assert scorer.zero == pytest.approx(zero, rel=1e-6)
    states = torch.cat(layer_outputs(tiny_model, sequences, layer))
    torch.testing.assert_close(scorer.mean_state, states.double().mean(dim=0).float(), rtol=1e-5, atol=1e-6)


def test_shared_prefix_leaves_every_sequence_a_token_of_its_own(tiny_model: LoadedModel) -> None:
    model = tiny_model.model
    assert prefix_to_share(model, [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [1, 2, 3, 4, 5, 6, 8]]) == 5
    assert prefix_to_share(model, [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]) == 4  # the shortest keeps one
    assert prefix_to_share(model, [[1, 2, 3, 9], [1, 2, 3, 8]]) == 0  # 3 shared: fewer than SHARED_PREFIX
    assert prefix_to_share(model, [[1, 2, 3, 4, 5], [0, 2, 3, 4, 5]]) == 0
    assert prefix_to_share(model, []) == 0


def test_scorer_leaves_the_model_whole(tiny_model: LoadedModel) -> None:
    layers = list(tiny_model.model.model.layers)
    scorer = LayerScorer(tiny_model.model, SEQUENCES, 10)

    def fails(hidden: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("a replacement that fails")

    with pytest.raises(RuntimeError, match="a replacement that fails"):
        scorer.cross_entropy(fails)
    assert list(tiny_model.model.model.layers) == layers
    assert cross_entropy(tiny_model.model, SEQUENCES, 10, None)[0] == pytest.approx(manual_ce(tiny_model, SEQUENCES))


def test_splice_json_is_the_one_pass_per_sequence_result(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    stored = json.loads((tiny_run / "splice" / "splice.json").read_text())
    model = Context().model(run.config.model, resolve_device("cpu")).model
    sequences = [r["token_ids"] for r in run.records]
    replaces = {"ce_clean": None, "ce_sae": sae_replacement(run.sae), "ce_zero": zero_replacement}
    plain = {key: cross_entropy(model, sequences, 10, replace)[0] for key, replace in replaces.items()}
    for key, value in plain.items():
        assert stored[key] == pytest.approx(value, rel=1e-6), key
    recovered = (plain["ce_zero"] - plain["ce_sae"]) / (plain["ce_zero"] - plain["ce_clean"])
    assert METRICS["ce_loss_recovered"].compute(run) == pytest.approx(recovered, rel=1e-5)
    # At the positions the samples hold (a decode step's last fed one; a prefill's prompt positions).
    spans = [(len(ids) - 1 - s.shape[1], len(ids) - 1) for ids, s in zip(sequences, run.activations, strict=True)]
    replaces["ce_mean"] = mean_replacement(torch.from_numpy(run.raw).mean(dim=0))
    there = {key: captured_cross_entropy(model, sequences, spans, 10, r)[0] for key, r in replaces.items()}
    for key, value in there.items():
        assert stored[f"captured_{key}"] == pytest.approx(value, rel=1e-5), key
    recovered = (there["ce_mean"] - there["ce_sae"]) / (there["ce_mean"] - there["ce_clean"])
    assert METRICS["captured_ce_loss_recovered_mean"].compute(run) == pytest.approx(recovered, rel=1e-4)


def test_saes_of_one_capture_share_the_clean_and_ablated_scores(tiny_run: Path, tmp_path: Path) -> None:
    """Three SAEs on one capture in one process (the run's, then the ablations that keep its capture):
    each splice has the run's clean and ablated CE, everywhere and at the captured positions, and a
    spliced CE of its own SAE (what the shared scorer saves is the bench's to measure)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "splice")  # the run's own splice test is redone in this process too
    cfg = RunData(run).config
    ctx = Context()  # what replicate shares between the run and its variants
    api.run(cfg, run, stages=("splice",), ctx=ctx)
    variants = [run / "seed1", run / "seed2"]
    for k, directory in enumerate(variants, start=1):
        variant_run(directory, run, {"train.seed": k}, ctx, progress=False)
    splices = [json.loads((d / "splice/splice.json").read_text()) for d in (run, *variants)]
    assert len({s["ce_sae"] for s in splices}) == len({s["captured_ce_sae"] for s in splices}) == 3
    shared = ("ce_clean", "ce_zero", "ce_mean", "captured_ce_clean", "captured_ce_zero", "captured_ce_mean")
    assert len({tuple(s[key] for key in shared) for s in splices}) == 1


def test_zero_ablated_ce_of_a_model_with_biases() -> None:
    """The zero-ablated CE from one pass over the longest sequence: bias-free, the zeroed stream stays
    zero and every token costs ln(vocab); with biases it becomes a constant of its own, its logits are
    not uniform, and each sequence's own targets decide the CE -- as the plain route has it."""
    config = AutoConfig.from_pretrained(REPO_ROOT / "fixtures" / "tiny")
    config.attention_bias = config.mlp_bias = True
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 1.0)
    sequences = random_sequences(12, seed=3)
    scorer = LayerScorer(model, sequences, 5, batch_tokens=100)
    expected = cross_entropy(model, sequences, 5, zero_replacement)[0]
    assert abs(expected - math.log(config.vocab_size)) > 0.01, "the biased model's zero-ablated logits are not uniform"
    assert scorer.zero == pytest.approx(expected, rel=1e-6)


def test_a_head_the_scorer_would_bypass_is_refused(tiny_model: LoadedModel) -> None:
    """The scorer runs the head itself: a config whose forward caps or scales the logits after it is refused."""
    sequences = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 12]]
    tiny_model.model.config.final_logit_softcapping = 30.0
    try:
        with pytest.raises(ReplicationError, match="sets final_logit_softcapping"):
            LayerScorer(tiny_model.model, sequences, 10)
    finally:
        tiny_model.model.config.final_logit_softcapping = None
    LayerScorer(tiny_model.model, sequences, 10)  # a plain head again


def test_sliding_windows_share_no_prefix(tiny_model: LoadedModel) -> None:
    """A model with sliding-window layers keeps each sequence's keys and values to itself."""
    sequences = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 12]]
    prefix = LayerScorer(tiny_model.model, sequences, 10).prefix
    assert prefix is not None and prefix.input_ids[0].tolist() == [5, 6, 7, 8, 9]
    tiny_model.model.config.sliding_window = 4
    try:
        scorer = LayerScorer(tiny_model.model, sequences, 10)
        assert scorer.prefix is None
        assert scorer.clean == pytest.approx(cross_entropy(tiny_model.model, sequences, 10, None)[0], rel=1e-6)
    finally:
        tiny_model.model.config.sliding_window = None
