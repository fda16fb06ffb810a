"""Part 3's data: the samples zero-padded to one length, the original's positional train/validation
split, and the one row of each sample the analysis encodes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from replication.errors import ReplicationError


def stack_samples(samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """Samples (1, T_i, d) zero-padded at the end of the sequence axis -> (N, T_max, d)."""
    # Prefill samples (EOS first) make T_max > 1: every other sample then brings zero rows, as the
    # original's did; with every sample (1, 1, d), as in the write-up, this is (N, 1, d).
    t_max = max(s.shape[1] for s in samples)
    return torch.cat([F.pad(s, (0, 0, 0, t_max - s.shape[1])) for s in samples])


def split_index(n_samples: int, train_fraction: float) -> int:
    """How many samples train: int(fraction * N), the original's cut (samples 0..index-1 train, the
    rest validate); an error when it leaves either side empty. The one place the split is computed."""
    n_train = int(train_fraction * n_samples)
    if n_train in (0, n_samples):
        raise ReplicationError(
            f"{n_samples} samples leave no training or no validation sample at train.train_fraction={train_fraction}"
        )
    return n_train


def positional_split(stacked: torch.Tensor, train_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first int(fraction * N) samples train, the rest validate; each flattened to (rows, d)."""
    n_train = split_index(stacked.shape[0], train_fraction)
    d = stacked.shape[-1]
    return stacked[:n_train].reshape(-1, d), stacked[n_train:].reshape(-1, d)


def positional_split_rows(samples: Sequence[torch.Tensor], train_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-token dataset's split: the first int(fraction * N) samples' rows train, the other
    samples' rows validate; every row is a real token, none is padding."""
    n_train = split_index(len(samples), train_fraction)
    return torch.cat([s[0] for s in samples[:n_train]]), torch.cat([s[0] for s in samples[n_train:]])


def shuffle_dimensions(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each column of (rows, d) permuted across the rows on its own: every value kept, every structure
    across dimensions destroyed."""
    order = torch.argsort(torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)), dim=0)
    return torch.gather(x, 0, order)


ROW_RULE = (
    "A (1, 1, d) sample is its only row. A prefill sample (1, T, d) -- EOS was the first new "
    "token, so only the prefill ran -- is encoded by its last row, the final prompt position, "
    "whose state produced the first (EOS) token: the one row comparable to a decode step's. The "
    "original code reshaped each sample with view(1, -1), which fails for T > 1."
)


def sample_rows(samples: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """One row per sample, (N, d), and the row index taken from each (1, T, d) sample."""
    rows = [s.shape[1] - 1 for s in samples]
    return torch.cat([s[0, r : r + 1] for s, r in zip(samples, rows, strict=True)]), rows
