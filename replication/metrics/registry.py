"""The metric registry: each metric a named function of a finished run, with its evidence and definition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replication.rundata import RunData


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[RunData], Any]
    evidence: str
    """The run file the value is computed from (a name in ``replication.layout``)."""
    definition: str
    """What it measures, printed in the report."""


METRICS: dict[str, Metric] = {}


def register(name: str, evidence: str, definition: str, compute: Callable[[RunData], Any]) -> None:
    if name in METRICS:
        raise ValueError(f"metric {name} is registered twice")
    METRICS[name] = Metric(name, compute, evidence, " ".join(definition.split()))


def metric(evidence: str) -> Callable[[Callable[[RunData], Any]], Callable[[RunData], Any]]:
    """Register the decorated function under its name, with its docstring as the definition."""

    def decorate(fn: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        register(fn.__name__, evidence, fn.__doc__ or "", fn)
        return fn

    return decorate
