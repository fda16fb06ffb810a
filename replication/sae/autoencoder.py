"""Part 3: the sparse autoencoder, its loss, and its files: ``cfg.json`` (its architecture) beside its
weights, as SAELens and sparsify keep theirs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, get_args

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from replication.config import Activation, Norm, Reduction
from replication.errors import ReplicationError
from replication.files import atomic_write, disk_error
from replication.sae import CFG_NAME, WEIGHTS_NAME


@dataclass(frozen=True)
class Architecture:
    """What an SAE file must say about itself to be rebuilt: shape, decoder activation, decoder norm."""

    d_in: int
    d_hidden: int
    decoder_activation: Activation = "relu"
    decoder_norm: Norm = "free"


FIELDS = tuple(Architecture.__dataclass_fields__)


class SAEOutput(NamedTuple):
    x_hat: torch.Tensor
    """Reconstruction (n, d_in)."""
    z: torch.Tensor
    """Codes (n, d_hidden), all >= 0."""


@dataclass(frozen=True)
class Loss:
    """One evaluation of the training loss: total = mse + l1_coefficient * l1."""

    total: torch.Tensor
    mse: torch.Tensor
    l1: torch.Tensor


class SparseAutoencoder(nn.Module):
    """z = ReLU(W_e x + b_e);  x_hat = act(W_d z + b_d), act = ReLU (the original's) or identity.

    ``decoder_norm="unit"``: training keeps every decoder direction at unit norm (``normalize_decoder``).
    """

    def __init__(
        self, d_in: int, d_hidden: int, decoder_activation: Activation = "relu", decoder_norm: Norm = "free"
    ) -> None:
        super().__init__()
        # PyTorch's default initialisation, the encoder built first: torch.manual_seed(s) right before
        # construction gives the original's initial weights.
        self.encoder = nn.Linear(d_in, d_hidden)
        self.decoder = nn.Linear(d_hidden, d_in)
        self.architecture = Architecture(d_in, d_hidden, decoder_activation, decoder_norm)

    @property
    def d_in(self) -> int:
        return self.architecture.d_in

    @property
    def d_hidden(self) -> int:
        return self.architecture.d_hidden

    @property
    def decoder_activation(self) -> Activation:
        return self.architecture.decoder_activation

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every feature's decoder direction (a column of ``decoder.weight``) to unit norm."""
        self.decoder.weight /= self.decoder.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_in) -> codes (n, d_hidden), all >= 0."""
        return F.relu(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, d_hidden) -> reconstruction (n, d_in)."""
        x_hat = self.decoder(z)
        return F.relu(x_hat) if self.decoder_activation == "relu" else x_hat

    def forward(self, x: torch.Tensor) -> SAEOutput:
        """(n, d_in) -> (reconstruction (n, d_in), codes (n, d_hidden))."""
        z = self.encode(x)
        return SAEOutput(self.decode(z), z)

    def save(self, directory: Path) -> list[Path]:
        """Write ``directory/cfg.json`` (the architecture), then ``directory/sae.safetensors`` (the weights)."""
        cfg, weights = directory / CFG_NAME, directory / WEIGHTS_NAME
        atomic_write(cfg, (json.dumps(asdict(self.architecture), indent=1) + "\n").encode())
        state = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        atomic_write(weights, safetensors.torch.save(state))
        return [cfg, weights]

    @classmethod
    def load(cls, directory: Path) -> SparseAutoencoder:
        """The SAE that ``save`` wrote to ``directory``, in eval mode; a file that is missing, damaged or
        disagrees with the other is a one-line error naming it."""
        cfg, weights = directory / CFG_NAME, directory / WEIGHTS_NAME
        try:
            arch = Architecture(**json.loads(_read(cfg, "the SAE's architecture is not beside its weights")))
        except TypeError:
            raise ReplicationError(f"{cfg} does not describe an SAE (expected {', '.join(FIELDS)})") from None
        except ValueError as exc:
            raise ReplicationError(f"{cfg} is unreadable: {type(exc).__name__}") from None
        if arch.decoder_activation not in get_args(Activation) or arch.decoder_norm not in get_args(Norm):
            raise ReplicationError(f"{cfg}: unknown architecture {asdict(arch)}")
        data = _read(weights, "run the stage that writes it first")
        try:
            state = safetensors.torch.load(data)
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise ReplicationError(f"{weights} is unreadable: {type(exc).__name__}") from None
        sae = cls(arch.d_in, arch.d_hidden, arch.decoder_activation, arch.decoder_norm)
        try:
            sae.load_state_dict(state)
        except RuntimeError:
            raise ReplicationError(f"{weights} does not match its cfg.json {asdict(arch)}") from None
        return sae.eval()


def _read(path: Path, missing: str) -> bytes:
    """The bytes of ``path``; one-line errors for a missing file (saying ``missing``) or a refused read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ReplicationError(f"{path} is missing: {missing}") from None
    except OSError as exc:
        raise disk_error(exc, path, "reading") from None


def l1_penalty(z: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """sum |z| over the whole batch (the original), its mean over all elements, or (``sample_mean``)
    its sum over a row's code dimensions averaged over the rows."""
    if reduction == "sum":
        return z.abs().sum()
    return z.abs().mean() if reduction == "mean" else z.abs().sum(dim=-1).mean()


def sae_loss(x: torch.Tensor, out: SAEOutput, l1_coefficient: float, reduction: Reduction = "sum") -> Loss:
    """total = mean((x_hat - x)^2) + l1_coefficient * l1_penalty(z)."""
    mse = F.mse_loss(out.x_hat, x)
    l1 = l1_penalty(out.z, reduction)
    return Loss(mse + l1_coefficient * l1, mse, l1)


def near_zero_fraction(z: torch.Tensor, threshold: float) -> float:
    """The write-up's "sparsity": the fraction of codes with |z| < threshold."""
    return float((z.abs() < threshold).float().mean())
