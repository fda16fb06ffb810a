"""The metric registry: each metric a named function of a finished run, with its evidence and definition."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from replication.rundir.reader import RunData

Dims = Callable[[RunData], list[int]]


@dataclass(frozen=True)
class Reach:
    """The values a metric can take on a run whatever training does, and why."""

    low: float
    high: float
    reason: str
    given: bool = False
    """Only given the steps early stopping allowed, an outcome of the run."""


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[RunData], Any]
    evidence: str
    """The run file the value is computed from (a name in ``rundir.layout``)."""
    definition: str
    """What it measures, printed in the report."""
    dims: Dims | None = None
    """For a metric about particular features: the code dimensions it points at (the cards cite them)."""
    reach: Callable[[RunData], Reach | None] | None = None
    """The values the design allows on this run: a claim decided on all of them is fixed by design."""
    detail: Callable[[RunData], str] | None = None
    """What the value was computed from (counts, rates, thresholds), for the report."""
    flags: Callable[[RunData], str] | None = None
    """For a test against a null: the smallest effect it can flag on this run, in words."""
    blind: Callable[[RunData], bool] | None = None
    """For a test against a null: True when it could not flag an effect as large as the write-up's own
    example (a failed claim is then no evidence of absence: "within chance")."""
    pvalue: bool = False
    """A p-value: over several seeds it is corrected for their number."""


METRICS: dict[str, Metric] = {}


def register(
    name: str, evidence: str, definition: str, compute: Callable[[RunData], Any], dims: Dims | None = None, **extra: Any
) -> None:
    """Add a metric (``extra``: ``reach``, ``detail``, ``flags``, ``blind``, ``pvalue``, as ``Metric`` says)."""
    if name in METRICS:
        raise ValueError(f"metric {name} is registered twice")
    METRICS[name] = Metric(name, compute, evidence, " ".join(definition.split()), dims, **extra)


def metric(
    evidence: str, dims: Dims | None = None, **extra: Any
) -> Callable[[Callable[[RunData], Any]], Callable[[RunData], Any]]:
    """Register the decorated function under its name, with its docstring as the definition."""

    def decorate(fn: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        register(fn.__name__, evidence, fn.__doc__ or "", fn, dims, **extra)
        return fn

    return decorate


def counted(
    evidence: str, name: str, **extra: Any
) -> Callable[[Callable[[RunData], list[Any]]], Callable[[RunData], list[Any]]]:
    """Register the count of what the decorated function lists (dimensions, or pairs of them) as the
    metric ``name``, with its docstring as the definition and the dimensions it lists as ``dims``."""

    def decorate(listing: Callable[[RunData], list[Any]]) -> Callable[[RunData], list[Any]]:
        doc = listing.__doc__ or ""
        register(name, evidence, doc, lambda run: len(listing(run)), lambda run: flat_dims(listing(run)), **extra)
        return listing

    return decorate


def flat_dims(items: Iterable[Any]) -> list[int]:
    """Dimensions, or the dimensions of pairs, once each in order of first appearance."""
    dims: dict[int, None] = {}
    for item in items:
        dims.update(dict.fromkeys(item if isinstance(item, tuple) else (item,)))
    return list(dims)
