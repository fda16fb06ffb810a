"""The run directory's files: JSON of finite numbers only, a manifest that lists no path outside
the run, a later step's record dropped as the step starts again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from replication.errors import ReplicationError
from replication.rundir import artifacts, layout
from replication.rundir.artifacts import verify_manifest


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


def test_json_holds_finite_numbers_only(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ReplicationError) as raised:
            artifacts.write_json(path, {"epochs": [{"loss": 1.0}, {"loss": value}]})
        assert str(raised.value) == f"{path}: epochs[1].loss is not a finite number; nothing was written"
        assert list(tmp_path.iterdir()) == []


def test_manifest_path_outside_the_run_is_refused(tmp_path: Path, uninterrupted: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReplicationError, match="a path outside the run directory"):
        verify_manifest(out)
