"""Shared fixtures: the tiny profile's model, and one tiny end-to-end run per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from replication.__main__ import main
from replication.config import RunConfig, load_profile
from replication.models import LoadedModel, load_model, resolve_device


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
