"""The splice test: cross-entropy with the hooked layer's output kept, replaced, or zeroed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from replication.config import RunConfig
from replication.metrics import METRICS
from replication.models import LoadedModel
from replication.rundata import RunData
from replication.sae import SparseAutoencoder
from replication.splice import cross_entropy, splice_test, zero_replacement
from replication.train import build_sae

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
    assert METRICS["ce_loss_recovered"].compute(RunData(tiny_run)) == splice["ce_loss_recovered"]
