"""The dependencies checked before any work: a missing or too-old package is one line and exit 2."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO_ROOT

from replication.dependencies import problem, requirements


def test_what_is_installed_meets_the_requirements() -> None:
    assert problem() is None


def test_the_requirements_are_pyprojects() -> None:
    listed = requirements()
    assert "transformers>=4.56" in listed and "pydantic>=2.12" in listed
    assert all("gguf" not in r for r in listed)
    assert "gguf>=0.10" in requirements(("smollm2",))


def test_a_missing_package_is_named_with_its_fix() -> None:
    assert problem(["no-such-distribution-here>=1.2", "pytest>=1"]) == (
        "no-such-distribution-here is missing (needs >=1.2); to fix: python -m pip install "
        "'no-such-distribution-here>=1.2'"
    )


def test_a_package_too_old_is_named_with_its_version() -> None:
    found = importlib.metadata.version("pytest")
    line = problem(["pytest>=999", "numpy>=998"])
    assert line == (
        f"pytest {found} is installed, >=999 is needed (and 1 more); to fix: python -m pip install "
        "'pytest>=999' 'numpy>=998'"
    )


def test_the_command_line_stops_on_an_old_transformers(tmp_path: Path) -> None:
    """transformers 4.40 found first on the path, as an old system package would be: one line, exit 2,
    before anything imports it."""
    info = tmp_path / "transformers-4.40.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 4.40.0\n")
    result = subprocess.run(
        [sys.executable, "-m", "replication", "verify", "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: transformers 4.40.0 is installed, >=4.56 is needed; to fix: python -m pip install "
        "'transformers>=4.56'\n"
    )
    assert result.stdout == ""
