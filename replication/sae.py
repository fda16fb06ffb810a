"""Part 3: the sparse autoencoder and its loss, as the original study built them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from replication.config import Activation, Reduction


class SparseAutoencoder(nn.Module):
    """z = ReLU(W_e x + b_e);  x_hat = act(W_d z + b_d), act = ReLU (faithful) or identity.

    The original applied a ReLU to the decoder output too, so reconstructions can never be
    negative although residual-stream activations are about half negative. PyTorch's default
    initialisation; the encoder is built before the decoder, so ``torch.manual_seed(s)`` right
    before construction gives the original's initial weights.
    """

    def __init__(self, d_in: int, d_hidden: int, decoder_activation: Activation = "relu") -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, d_hidden)
        self.decoder = nn.Linear(d_hidden, d_in)
        self.decoder_activation = decoder_activation

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every feature's decoder direction (a column of ``decoder.weight``) to unit norm."""
        self.decoder.weight /= self.decoder.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)

    @property
    def d_in(self) -> int:
        return self.encoder.in_features

    @property
    def d_hidden(self) -> int:
        return self.encoder.out_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> codes (n, d_hidden), all >= 0."""
        return F.relu(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, d_hidden) -> reconstruction (n, d_in)."""
        x_hat = self.decoder(z)
        return F.relu(x_hat) if self.decoder_activation == "relu" else x_hat

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, d_in) -> (reconstruction (n, d_in), codes (n, d_hidden))."""
        z = self.encode(x)
        return self.decode(z), z


def l1_penalty(z: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """sum |z| over the whole batch (the original), its mean over all elements, or (``sample_mean``)
    its sum over a row's code dimensions averaged over the rows."""
    if reduction == "sum":
        return z.abs().sum()
    return z.abs().mean() if reduction == "mean" else z.abs().sum(dim=-1).mean()


def sae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    z: torch.Tensor,
    l1_coefficient: float,
    reduction: Reduction = "sum",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mse, l1): total = mean((x_hat - x)^2) + l1_coefficient * l1_penalty(z)."""
    mse = F.mse_loss(x_hat, x)
    l1 = l1_penalty(z, reduction)
    return mse + l1_coefficient * l1, mse, l1


def near_zero_fraction(z: torch.Tensor, threshold: float) -> float:
    """The write-up's "sparsity": the fraction of codes with |z| < threshold."""
    return float((z.abs() < threshold).float().mean())
