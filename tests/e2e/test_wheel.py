"""The package as a wheel: built, installed into an environment of its own without the checkout, and
run from another directory -- a tiny run and its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO_ROOT


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh environment holding the wheel; its dependencies are this session's
    packages, seen through a .pth file (no package of the checkout: its editable hook is no site
    directory there, so it never runs)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip(reason="uv builds and installs the wheel (python -m pip install uv)")
    root = tmp_path_factory.mktemp("wheel")
    built = _run(uv, "build", "--wheel", "--out-dir", root / "dist", REPO_ROOT)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("sae_replication-*.whl")
    made = _run(uv, "venv", "--python", sys.executable, root / "env")
    assert made.returncode == 0, made.stderr[-2000:]
    python = root / "env" / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = _run(uv, "pip", "install", "--python", python, "--no-deps", wheel)
    assert done.returncode == 0, done.stderr[-2000:]
    return python


def test_the_wheel_carries_the_claims_and_the_study(installed: Path, tmp_path: Path) -> None:
    code = (
        "import replication.config as c, replication.evaluation.claims as claims\n"
        "print(c.PACKAGE_DIR); print(len(claims.load_claims()))"
    )
    result = _run(installed, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    package, count = result.stdout.split()
    assert Path(package).is_relative_to(installed.parent.parent) and not Path(package).is_relative_to(REPO_ROOT)
    assert int(count) > 40


def test_a_tiny_run_and_its_report_from_another_directory(installed: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(line + "\n" for line in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:10])
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = ("-m", "replication", "run", "--profile", "tiny", "--out", "run", "--prompts", prompts, "--quiet")
    result = _run(installed, *command, "--batch-size", "10", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    result = _run(installed, "-m", "replication", "report", "--run", "run", cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (elsewhere / "run" / "REPORT.md").read_text().startswith("#")
    environment = json.loads((elsewhere / "run" / "manifest.json").read_text())["stages"]["capture"]["environment"]
    assert environment["code_commit"] == "sae-replication 0.1.0 (installed, no checkout)"
    assert environment["packages"]["transformers"] is not None
