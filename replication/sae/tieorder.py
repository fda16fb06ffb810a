"""The original's tie order: ``np.argsort`` as numpy 1.24 computed it, for the faithful top-k.

Current numpy leaves equal values in another order, and a dead feature's top 5 is all ties: the
write-up's "OOP" feature is 1.24's order (docs/method.md). Written from the algorithm's description
in numpy's sources for 1-D float arrays; ``nox -s tieorder`` checks it against numpy 1.24.4.
"""

from __future__ import annotations

import numpy as np

SMALL_PARTITION = 15
"""A partition of (hi - lo) <= 15, i.e. at most 16 elements, is finished by insertion sort."""


def _less(a: float, b: float) -> bool:
    """numpy's float order: NaN sorts after every number."""
    return a < b or (b != b and a == a)  # noqa: PLR0124 -- x != x is the NaN test


def _heapsort(values: list[float], order: list[int], lo: int, n: int) -> None:
    """Heapsort of ``order[lo:lo + n]`` by ``values``, with the 1-based sift-down numpy uses."""

    def sift(i: int, size: int, item: int) -> None:
        # Heap positions 1..size live at order[lo + position - 1].
        j = 2 * i
        while j <= size:
            if j < size and _less(values[order[lo + j - 1]], values[order[lo + j]]):
                j += 1
            if _less(values[item], values[order[lo + j - 1]]):
                order[lo + i - 1] = order[lo + j - 1]
                i, j = j, 2 * j
            else:
                break
        order[lo + i - 1] = item

    for start in range(n // 2, 0, -1):
        sift(start, n, order[lo + start - 1])
    for size in range(n, 1, -1):
        item = order[lo + size - 1]
        order[lo + size - 1] = order[lo]
        sift(1, size - 1, item)


def _partition(values: list[float], order: list[int], lo: int, hi: int) -> int:
    """Median-of-three pivot moved to hi - 1, then the two-pointer partition; the pivot's final place."""
    mid = lo + ((hi - lo) >> 1)
    if _less(values[order[mid]], values[order[lo]]):
        order[mid], order[lo] = order[lo], order[mid]
    if _less(values[order[hi]], values[order[mid]]):
        order[hi], order[mid] = order[mid], order[hi]
    if _less(values[order[mid]], values[order[lo]]):
        order[mid], order[lo] = order[lo], order[mid]
    pivot = values[order[mid]]
    i, j = lo, hi - 1
    order[mid], order[j] = order[j], order[mid]
    while True:
        i += 1
        while _less(values[order[i]], pivot):
            i += 1
        j -= 1
        while _less(pivot, values[order[j]]):
            j -= 1
        if i >= j:
            break
        order[i], order[j] = order[j], order[i]
    order[i], order[hi - 1] = order[hi - 1], order[i]
    return i


def _insertion_sort(values: list[float], order: list[int], lo: int, hi: int) -> None:
    for k in range(lo + 1, hi + 1):
        item = order[k]
        m = k
        while m > lo and _less(values[item], values[order[m - 1]]):
            order[m] = order[m - 1]
            m -= 1
        order[m] = item


def argsort(column: np.ndarray) -> np.ndarray:
    """Indices that sort ``column`` ascending, ties in numpy 1.24's ``np.argsort`` order."""
    values = [float(v) for v in np.asarray(column).ravel()]
    order = list(range(len(values)))
    stack: list[tuple[int, int, int]] = []
    lo, hi = 0, len(values) - 1
    depth = 2 * (len(values).bit_length() - 1) if values else 0
    while True:
        if depth < 0:  # too deep: the rest of this partition by heapsort
            _heapsort(values, order, lo, hi - lo + 1)
        else:
            while hi - lo > SMALL_PARTITION:
                i = _partition(values, order, lo, hi)
                depth -= 1
                # The larger side waits on the stack with the depth reached; the smaller is sorted next.
                if i - lo < hi - i:
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            _insertion_sort(values, order, lo, hi)
        if not stack:
            return np.asarray(order, dtype=np.int64)
        lo, hi, depth = stack.pop()


def top_k(column: np.ndarray, k: int) -> np.ndarray:
    """The original's ``np.argsort(column)[-k:][::-1]``, under numpy 1.24's tie order."""
    return argsort(np.asarray(column).ravel())[-k:][::-1]
