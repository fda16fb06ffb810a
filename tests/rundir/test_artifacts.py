"""The run directory's files: a later step's record dropped as the step starts again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from replication.errors import ReplicationError
from replication.rundir import artifacts, layout


def test_a_stale_later_step_is_forgotten_as_it_starts_again(tiny_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run")
    artifacts.write_json(run / layout.BANDS_JSON, {"bands": {}})
    inputs = {layout.SAMPLES: "0" * 64}  # made from an older samples.json: stale
    artifacts.record_addition(run, "bands", [run / layout.BANDS_JSON], {"inputs": inputs})
    with pytest.raises(ReplicationError, match="stage bands is stale"):
        artifacts.verify_manifest(run)
    artifacts.forget_addition(run, "bands", [layout.BANDS_JSON], stale_only=True)
    manifest = artifacts.verify_manifest(run)
    assert "bands" not in manifest["stages"] and layout.BANDS_JSON not in manifest["files"]
    artifacts.forget_addition(tmp_path / "nowhere", "bands", [layout.BANDS_JSON])
    assert not (tmp_path / "nowhere").exists()


def test_a_current_later_step_is_kept_where_only_stale_ones_go(tiny_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(tiny_run, tmp_path / "run")
    artifacts.write_json(run / layout.BANDS_JSON, {"bands": {}})
    inputs = {layout.SAMPLES: artifacts.sha256_file(run / layout.SAMPLES)}
    artifacts.record_addition(run, "bands", [run / layout.BANDS_JSON], {"inputs": inputs})
    artifacts.forget_addition(run, "bands", [layout.BANDS_JSON], stale_only=True)
    assert layout.BANDS_JSON in artifacts.verify_manifest(run)["files"]
