"""Batches of many sequences for one forward pass each: sorted by length, right-padded, cut at a token budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

BATCH_TOKENS = 1024
"""Padded tokens per batch of a pass over many sequences: bounds the (batch, seq, ...) tensors it holds."""


@dataclass
class PaddedBatch:
    """Sequences of similar length, right-padded: a causal model's real positions never see the
    padding after them."""

    rows: list[int]
    """Indices of its sequences in the list they came from."""
    lengths: list[int]
    input_ids: torch.Tensor
    """(batch, T) on the CPU, padded with 0."""
    attention_mask: torch.Tensor
    """(batch, T): 1 on each row's own tokens."""


def sorted_batches(sequences: list[list[int]], batch_tokens: int = BATCH_TOKENS) -> list[PaddedBatch]:
    """``sequences`` shortest first, cut into batches of at most ``batch_tokens`` padded tokens (rows x
    the longest row; a sequence longer than that alone), each right-padded."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * len(sequences[i]) <= batch_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    batches = []
    for rows in groups:
        lengths = [len(sequences[i]) for i in rows]
        input_ids = torch.zeros((len(rows), max(lengths)), dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, i in enumerate(rows):
            input_ids[row, : lengths[row]] = torch.tensor(sequences[i], dtype=torch.long)
            mask[row, : lengths[row]] = 1
        batches.append(PaddedBatch(rows, lengths, input_ids, mask))
    return batches
