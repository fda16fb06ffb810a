"""Collects the benchmarks' measurements and prints the ratios measured in the same run."""

from __future__ import annotations

from typing import Any

import pytest

RESULTS: dict[str, Any] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("measured in this run")
    for key, value in RESULTS.items():
        terminalreporter.write_line(f"{key}: {value}")
    one, many = RESULTS.get("capture tokens/s, batch 1"), RESULTS.get("capture tokens/s, batch 32")
    if one and many:
        terminalreporter.write_line(f"capture speed-up, batch 32 over batch 1: {many / one:.2f}x")
