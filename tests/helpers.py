"""Plain helpers the tests share (conftest.py exposes them as fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from replication.config import REPO_ROOT

Cli = Callable[..., subprocess.CompletedProcess[str]]
"""The type of the ``cli`` fixture."""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m replication ARGS`` in a fresh interpreter from the repository root; ``env`` is
    added to this process's environment (e.g. HF_HOME, which Hugging Face reads when imported)."""
    return subprocess.run(
        [sys.executable, "-m", "replication", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
