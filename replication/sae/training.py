"""Part 3: the original's full-batch training loop with early stopping (its data: ``sae.data``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from replication.config import TrainConfig
from replication.errors import ReplicationError
from replication.sae.autoencoder import SparseAutoencoder, near_zero_fraction, sae_loss


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
    """The SAE with the original's initial weights for seed ``cfg.seed`` (decoder directions then
    rescaled to unit norm when ``cfg.decoder_norm`` is ``unit``)."""
    torch.manual_seed(cfg.seed)
    sae = SparseAutoencoder(d_in, cfg.expansion * d_in, cfg.decoder_activation, cfg.decoder_norm)
    if cfg.decoder_norm == "unit":
        sae.normalize_decoder()
    return sae


def minibatches(n_rows: int, cfg: TrainConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """Row indices of each optimiser step of one epoch: all rows at once (``batch_size`` 0, the
    original), or a fresh permutation cut into batches of ``batch_size``."""
    if cfg.batch_size == 0:
        return [torch.arange(n_rows)]
    return list(torch.randperm(n_rows, generator=generator).split(cfg.batch_size))


@dataclass(frozen=True)
class Step:
    """One optimiser step: its losses (floats) and the codes of its forward pass, (rows, d_hidden)."""

    total: float
    mse: float
    l1: float
    z: torch.Tensor


def train_step(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, x: torch.Tensor, cfg: TrainConfig) -> Step:
    """Forward, loss, backward, one Adam step (then unit-norm decoder directions if configured)."""
    optimizer.zero_grad()
    out = sae(x)
    loss = sae_loss(x, out, cfg.l1_coefficient, cfg.l1_reduction)
    if not torch.isfinite(loss.total):
        raise ReplicationError(f"training diverged: loss is {loss.total.item()}")
    loss.total.backward()
    optimizer.step()
    if cfg.decoder_norm == "unit":
        sae.normalize_decoder()
    return Step(loss.total.item(), loss.mse.item(), loss.l1.item(), out.z.detach())


def untrained_result(
    sae: SparseAutoencoder, train_x: torch.Tensor, val_x: torch.Tensor, cfg: TrainConfig
) -> TrainResult:
    """The control: the SAE as built, no optimiser step. Its one history row is the forward pass
    on the training rows (what the original's epoch 1 reports, before that epoch's step) and the
    validation MSE at initialisation."""
    sae.eval()
    with torch.no_grad():
        out = sae(train_x)
        loss = sae_loss(train_x, out, cfg.l1_coefficient, cfg.l1_reduction)
        val_mse = F.mse_loss(sae(val_x).x_hat, val_x).item()
    row = {
        "epoch": 1,
        "train_loss": loss.total.item(),
        "train_mse": loss.mse.item(),
        "l1_loss": loss.l1.item(),
        "val_loss": val_mse,
        "sparsity": near_zero_fraction(out.z, cfg.sparsity_threshold),
    }
    return TrainResult(sae=sae, history=[row], last_codes=out.z, best_epoch=0)


def train_sae(
    train_x: torch.Tensor, val_x: torch.Tensor, cfg: TrainConfig, progress: bool = True, untrained: bool = False
) -> TrainResult:
    """Adam with early stopping on validation MSE. By default one full-batch step per epoch, as the
    original; with ``cfg.batch_size`` an epoch is a pass of minibatch steps, and its losses and
    sparsity are over all of the epoch's training rows. ``untrained``: the control, no step at all."""
    sae = build_sae(train_x.shape[1], cfg)
    if untrained:
        return untrained_result(sae, train_x, val_x, cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience)
    history: list[dict[str, float]] = []
    codes = torch.empty(0)
    epochs = tqdm(range(1, cfg.max_epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in epochs:
        sae.train()
        codes = torch.empty(train_x.shape[0], sae.d_hidden)
        sums = torch.zeros(3, dtype=torch.float64)
        for rows in minibatches(train_x.shape[0], cfg, generator):
            try:
                step = train_step(sae, optimizer, train_x[rows], cfg)
            except ReplicationError as exc:
                raise ReplicationError(f"{exc} at epoch {epoch}") from None
            codes[rows] = step.z
            sums += torch.tensor([step.total, step.mse, step.l1], dtype=torch.float64) * len(rows)
        train_loss, train_mse, l1_loss = (sums / train_x.shape[0]).tolist()
        sae.eval()
        with torch.no_grad():
            val_mse = F.mse_loss(sae(val_x).x_hat, val_x).item()
        if not math.isfinite(val_mse):
            raise ReplicationError(f"training diverged: validation loss is {val_mse} at epoch {epoch}")
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_mse": train_mse,
            "l1_loss": l1_loss,
            "val_loss": val_mse,
            "sparsity": near_zero_fraction(codes, cfg.sparsity_threshold),
        }
        history.append(row)
        epochs.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val_mse:.4f}")
        if stopper.update(epoch, val_mse, sae):
            break
    sae.load_state_dict(stopper.best_state)
    sae.eval()
    return TrainResult(sae=sae, history=history, last_codes=codes, best_epoch=stopper.best_epoch)
