"""Part 3: the original's data preparation and full-batch training loop with early stopping."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from replication.config import TrainConfig
from replication.errors import ReplicationError
from replication.sae import SparseAutoencoder, near_zero_fraction, sae_loss


def stack_samples(samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """Samples (1, T_i, d) zero-padded at the end of the sequence axis -> (N, T_max, d).

    With every sample (1, 1, d), as in the write-up, this is just (N, 1, d). Prefill samples
    (EOS first) make T_max > 1, and every other sample then contributes zero rows, as the
    original code did.
    """
    t_max = max(s.shape[1] for s in samples)
    return torch.cat([F.pad(s, (0, 0, 0, t_max - s.shape[1])) for s in samples])


def positional_split(stacked: torch.Tensor, train_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first int(fraction * N) samples train, the rest validate; each flattened to (rows, d)."""
    n_train = int(train_fraction * stacked.shape[0])
    if n_train == 0 or n_train == stacked.shape[0]:
        raise ReplicationError(
            f"{stacked.shape[0]} samples leave no training or no validation sample at "
            f"train.train_fraction={train_fraction}"
        )
    d = stacked.shape[-1]
    return stacked[:n_train].reshape(-1, d), stacked[n_train:].reshape(-1, d)


@dataclass
class EarlyStopping:
    """Stop once ``patience`` epochs in a row fail to beat the best value; keep the best state."""

    patience: int
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def update(self, epoch: int, value: float, model: torch.nn.Module) -> bool:
        """Record epoch's value; True when training should stop."""
        if value < self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


@dataclass
class TrainResult:
    """The best (reloaded) SAE, one history row per epoch, and the last epoch's training codes."""

    sae: SparseAutoencoder
    history: list[dict[str, float]]
    last_codes: torch.Tensor
    """Codes of the last epoch's training forward pass (the original's PCA input)."""
    best_epoch: int


def build_sae(d_in: int, cfg: TrainConfig) -> SparseAutoencoder:
    """The SAE with the original's initial weights for seed ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return SparseAutoencoder(d_in, cfg.expansion * d_in, cfg.decoder_activation)


def train_sae(train_x: torch.Tensor, val_x: torch.Tensor, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Full-batch Adam: one step per epoch on all training rows; early stop on validation MSE."""
    sae = build_sae(train_x.shape[1], cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    stopper = EarlyStopping(cfg.patience)
    history: list[dict[str, float]] = []
    codes = torch.empty(0)
    epochs = tqdm(range(1, cfg.max_epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in epochs:
        sae.train()
        optimizer.zero_grad()
        x_hat, codes = sae(train_x)
        total, mse, l1 = sae_loss(train_x, x_hat, codes, cfg.l1_coefficient, cfg.l1_reduction)
        if not torch.isfinite(total):
            raise ReplicationError(f"training diverged: loss is {total.item()} at epoch {epoch}")
        total.backward()
        optimizer.step()
        sae.eval()
        with torch.no_grad():
            val_mse = F.mse_loss(sae(val_x)[0], val_x).item()
        if not math.isfinite(val_mse):
            raise ReplicationError(f"training diverged: validation loss is {val_mse} at epoch {epoch}")
        row = {
            "epoch": epoch,
            "train_loss": total.item(),
            "train_mse": mse.item(),
            "l1_loss": l1.item(),
            "val_loss": val_mse,
            "sparsity": near_zero_fraction(codes.detach(), cfg.sparsity_threshold),
        }
        history.append(row)
        epochs.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val_mse:.4f}")
        if stopper.update(epoch, val_mse, sae):
            break
    sae.load_state_dict(stopper.best_state)
    sae.eval()
    return TrainResult(sae=sae, history=history, last_codes=codes.detach(), best_epoch=stopper.best_epoch)
