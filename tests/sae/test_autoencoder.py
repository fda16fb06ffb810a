"""The SAE: its equation and loss by hand, unit decoder directions, its files saved and loaded."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from replication.config import TrainConfig
from replication.errors import ReplicationError
from replication.sae.autoencoder import Architecture, SparseAutoencoder, l1_penalty, near_zero_fraction, sae_loss
from replication.sae.training import build_sae


def hand_sae(decoder_activation: str = "relu") -> SparseAutoencoder:
    """d_in 2 -> d_hidden 3 with hand-set weights."""
    sae = SparseAutoencoder(2, 3, decoder_activation)  # type: ignore[arg-type]
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.encoder.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
        sae.decoder.weight.copy_(torch.tensor([[1.0, 0.0, 0.5], [0.0, -1.0, 0.0]]))
        sae.decoder.bias.copy_(torch.tensor([0.0, 0.5]))
    return sae


def test_loss_by_hand_relu_decoder_summed_l1() -> None:
    sae = hand_sae()
    x = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])
    x_hat, z = sae(x)
    # z = relu(W_e x + b_e): row 1 -> (2, 1, 2); row 2 -> (0, 3, 1)
    torch.testing.assert_close(z, torch.tensor([[2.0, 1.0, 2.0], [0.0, 3.0, 1.0]]))
    # W_d z + b_d: row 1 -> (3, -0.5); row 2 -> (0.5, -2.5); the decoder ReLU clips the negatives.
    torch.testing.assert_close(x_hat, torch.tensor([[3.0, 0.0], [0.5, 0.0]]))
    loss = sae_loss(x, sae(x), l1_coefficient=0.001)
    total, mse, l1 = loss.total, loss.mse, loss.l1
    # mse = mean of (1, 1, 1.5^2, 3^2) = (1 + 1 + 2.25 + 9) / 4
    assert mse.item() == pytest.approx(13.25 / 4)
    assert l1.item() == pytest.approx(9.0)  # sum over the whole batch, not a mean
    assert total.item() == pytest.approx(13.25 / 4 + 0.009)
    mean_l1 = l1_penalty(z, "mean")
    assert mean_l1.item() == pytest.approx(9.0 / 6)
    # sample_mean: each row's sum (5 and 4), averaged over the 2 rows
    assert l1_penalty(z, "sample_mean").item() == pytest.approx(4.5)


def test_normalize_decoder_gives_unit_feature_directions() -> None:
    sae = hand_sae("linear")
    sae.normalize_decoder()
    # Columns (1, 0), (0, -1), (0.5, 0): the third is rescaled to (1, 0), the others already unit.
    torch.testing.assert_close(sae.decoder.weight, torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 0.0]]))
    unit = build_sae(8, TrainConfig(decoder_norm="unit"))
    torch.testing.assert_close(unit.decoder.weight.norm(dim=0), torch.ones(16))
    # Same initial encoder as the free one: only the decoder is rescaled.
    torch.testing.assert_close(unit.encoder.weight, build_sae(8, TrainConfig()).encoder.weight, rtol=0, atol=0)


def test_linear_decoder_keeps_negative_reconstructions() -> None:
    x_hat, _ = hand_sae("linear")(torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(x_hat, torch.tensor([[3.0, -0.5]]))


def test_near_zero_fraction() -> None:
    z = torch.tensor([[0.0, 0.009, 0.01, 0.5]])
    assert near_zero_fraction(z, 0.01) == pytest.approx(0.5)


@pytest.mark.parametrize(("activation", "norm"), [("relu", "free"), ("linear", "unit")])
def test_save_and_load_round_trip_the_architecture(tmp_path: Path, activation: str, norm: str) -> None:
    cfg = TrainConfig(decoder_activation=activation, decoder_norm=norm)  # type: ignore[arg-type]
    sae = build_sae(6, cfg)
    paths = sae.save(tmp_path / "train")
    assert paths == [tmp_path / "train" / "cfg.json", tmp_path / "train" / "sae.safetensors"]
    assert json.loads(paths[0].read_text()) == {  # the architecture beside the weights, as SAELens keeps it
        "d_in": 6,
        "d_hidden": 12,
        "decoder_activation": activation,
        "decoder_norm": norm,
    }
    loaded = SparseAutoencoder.load(tmp_path / "train")
    assert loaded.architecture == Architecture(6, 12, activation, norm)  # type: ignore[arg-type]
    assert not loaded.training
    x = torch.randn(4, 6) - 0.5  # negative values: a ReLU decoder and a linear one differ here
    torch.testing.assert_close(loaded(x).x_hat, sae(x).x_hat, rtol=0, atol=0)
    for name, tensor in sae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_weights_without_a_matching_cfg_json_are_refused_in_one_line(tmp_path: Path) -> None:
    sae = build_sae(4, TrainConfig())
    save_file(sae.state_dict(), str(tmp_path / "sae.safetensors"))  # weights alone
    with pytest.raises(ReplicationError, match=r"cfg.json is missing: the SAE's architecture is not beside"):
        SparseAutoencoder.load(tmp_path)
    sae.save(tmp_path)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"d_in": 4, "d_sae": 8}))  # another library's key
    with pytest.raises(ReplicationError, match=r"cfg.json does not describe an SAE \(expected d_in, d_hidden"):
        SparseAutoencoder.load(tmp_path)
    cfg.write_text(json.dumps({"d_in": 4, "d_hidden": 8, "decoder_activation": "gelu"}))
    with pytest.raises(ReplicationError, match=r"cfg.json: unknown architecture"):
        SparseAutoencoder.load(tmp_path)
    cfg.write_text(json.dumps({"d_in": 4, "d_hidden": 16}))  # the weights are 4 -> 8
    with pytest.raises(ReplicationError) as caught:
        SparseAutoencoder.load(tmp_path)
    message = str(caught.value)
    assert "sae.safetensors does not match its cfg.json" in message and "\n" not in message


def test_damaged_or_missing_weights_are_refused_in_one_line(tmp_path: Path) -> None:
    sae = build_sae(4, TrainConfig())
    sae.save(tmp_path)
    weights = tmp_path / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # cut short
    with pytest.raises(ReplicationError, match=r"sae.safetensors is unreadable: "):
        SparseAutoencoder.load(tmp_path)
    weights.unlink()
    with pytest.raises(ReplicationError, match=r"sae.safetensors is missing: "):
        SparseAutoencoder.load(tmp_path)
    (tmp_path / "cfg.json").write_text("{")
    with pytest.raises(ReplicationError, match=r"cfg.json is unreadable: JSONDecodeError"):
        SparseAutoencoder.load(tmp_path)


def test_a_refused_save_leaves_the_saved_sae_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk: the error names the file, the SAE saved before still loads, no temporary file is left."""
    old = build_sae(4, TrainConfig(seed=1))
    old.save(tmp_path)
    real = os.write

    def full(fd: int, data: Any) -> int:
        real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ReplicationError, match=rf"^no space left on device writing {tmp_path}/cfg.json \(the run"):
        build_sae(4, TrainConfig(seed=2)).save(tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json", "sae.safetensors"]
    torch.testing.assert_close(SparseAutoencoder.load(tmp_path).encoder.weight, old.encoder.weight, rtol=0, atol=0)


def test_forward_returns_named_output() -> None:
    sae = hand_sae()
    out = sae(torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(out.z, torch.tensor([[2.0, 1.0, 2.0]]))
    torch.testing.assert_close(out.x_hat, torch.tensor([[3.0, 0.0]]))
