"""The metric registry: each metric a named function of a finished run, with its evidence and definition."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from replication.rundir.reader import RunData

Dims = Callable[[RunData], list[int]]


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


METRICS: dict[str, Metric] = {}


def register(
    name: str, evidence: str, definition: str, compute: Callable[[RunData], Any], dims: Dims | None = None
) -> None:
    if name in METRICS:
        raise ValueError(f"metric {name} is registered twice")
    METRICS[name] = Metric(name, compute, evidence, " ".join(definition.split()), dims)


def metric(evidence: str, dims: Dims | None = None) -> Callable[[Callable[[RunData], Any]], Callable[[RunData], Any]]:
    """Register the decorated function under its name, with its docstring as the definition."""

    def decorate(fn: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        register(fn.__name__, evidence, fn.__doc__ or "", fn, dims)
        return fn

    return decorate


def counted(evidence: str, name: str) -> Callable[[Callable[[RunData], list[Any]]], Callable[[RunData], list[Any]]]:
    """Register the count of what the decorated function lists (dimensions, or pairs of them) as the
    metric ``name``, with the function's docstring as its definition; the dimensions it lists are the
    metric's ``dims``. One definition for the list and its count."""

    def decorate(listing: Callable[[RunData], list[Any]]) -> Callable[[RunData], list[Any]]:
        def count(run: RunData) -> int:
            return len(listing(run))

        register(name, evidence, listing.__doc__ or "", count, lambda run: flat_dims(listing(run)))
        return listing

    return decorate


def flat_dims(items: Iterable[Any]) -> list[int]:
    """Dimensions, or the dimensions of pairs, once each in order of first appearance."""
    dims: dict[int, None] = {}
    for item in items:
        dims.update(dict.fromkeys(item if isinstance(item, tuple) else (item,)))
    return list(dims)
