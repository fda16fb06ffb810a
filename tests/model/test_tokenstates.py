"""The token states' read-out: the extremes of each feature's logits, against a full stable sort."""

from __future__ import annotations

import pytest
import torch

from replication.model.tokenstates import extremes


@pytest.mark.parametrize("seed", [0, 1])
def test_extremes_are_the_ends_of_a_stable_descending_sort(seed: int) -> None:
    """The k largest (largest first; equal values lower id first) and the k smallest (smallest first;
    equal values higher id first): what ``argsort(descending, stable)`` and its reverse list, ties at
    the cut included."""
    torch.manual_seed(seed)
    logits = torch.randn(3000, 6).round(decimals=1)  # many equal values, some at the k-th place
    logits[5, 0] = logits[7, 0] = logits[:, 0].max() + 1  # a tie at the very top
    logits[9, 1] = logits[11, 1] = logits[:, 1].min() - 1  # a tie at the very bottom
    logits[:, 2] = 0.0  # every value equal
    largest, smallest = extremes(logits, 10)
    order = torch.argsort(logits, dim=0, descending=True, stable=True)
    assert largest == order[:10].T.tolist()
    assert smallest == order.flip(0)[:10].T.tolist()
    assert largest[0][:2] == [5, 7] and smallest[1][:2] == [11, 9]
    assert largest[2] == list(range(10)) and smallest[2] == list(range(2999, 2989, -1))
