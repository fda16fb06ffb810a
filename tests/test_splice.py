"""The splice test: cross-entropy with the hooked layer's output kept, replaced, or zeroed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from replication.config import RunConfig
from replication.metrics import METRICS
from replication.models import LoadedModel
from replication.rundata import RunData
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


def test_splice_test_reports_ce_loss_recovered(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    sae = build_sae(64, tiny_config.train)
    result = splice_test(tiny_model.model, sae, [*SEQUENCES, [4]], 10)
    assert result["sequences"] == 2  # a one-token sequence predicts nothing and is left out
    assert result["ce_clean"] == pytest.approx(manual_ce(tiny_model, SEQUENCES), rel=1e-6)
    expected = (result["ce_zero"] - result["ce_sae"]) / (result["ce_zero"] - result["ce_clean"])
    assert result["ce_loss_recovered"] == pytest.approx(expected)
    assert result["ce_sae"] != result["ce_clean"]


def test_splice_stage_of_a_run(tiny_run: Path) -> None:
    splice = json.loads((tiny_run / "splice" / "splice.json").read_text())
    records = json.loads((tiny_run / "capture" / "samples.json").read_text())
    assert splice["tokens"] == sum(len(r["token_ids"]) - 1 for r in records)
    assert splice["hook"] == "model.layers.10"
    assert METRICS["ce_loss_recovered"].compute(RunData(tiny_run)) == splice["ce_loss_recovered"]
