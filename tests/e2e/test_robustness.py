"""Robustness: a crash at any write leaves a complete previous state and the same command finishes
it; up-to-date stages are skipped; stale stages are refused; NaN in a capture is named."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT, assert_complete, run_args, write_key, writes_in_a_run
from safetensors.numpy import load_file, save_file

from replication.__main__ import main
from replication.errors import ReplicationError
from replication.rundir.artifacts import sha256_file, stage_outputs, verify_manifest


class Crash(Exception):
    """Stands in for the process dying."""


def test_crash_at_every_write_in_turn_then_the_same_command_finishes(
    tmp_path: Path, small_prompts: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies before each rename into place, once per write, in turn; each time the
    previous state is whole, and the next run of the same command goes on from it. A crash at a
    file finds the state a crash there from a fresh start would (the stages before it recorded,
    its own stage part-written), so the last run ends with an uninterrupted run's bytes."""
    assert writes_in_a_run(uninterrupted) == 36  # 24 files; config.yaml and manifest.json once a stage
    out = tmp_path / "run"
    crashed: list[tuple[str, str]] = []
    real_replace = os.replace

    def dying_replace(src: Any, dst: Any) -> None:
        if Path(dst).is_relative_to(out) and (key := write_key(Path(dst), out)) not in crashed:
            crashed.append(key)
            raise Crash(f"died before writing {dst}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    for _ in range(100):
        try:
            assert main(run_args(out, small_prompts)) == 0
            break
        except Crash:
            assert_complete(out)
    assert len(crashed) == writes_in_a_run(uninterrupted)
    for name in stage_outputs(uninterrupted):
        assert sha256_file(out / name) == sha256_file(uninterrupted / name), name
    verify_manifest(out)


def test_kill_9_then_same_command_finishes(tmp_path: Path, small_prompts: Path, uninterrupted: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "replication", *run_args(out, small_prompts)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "capture" / "activations.safetensors"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # kill it right after its first artifact appears, mid-stage
    try:
        assert first.exists(), "the run's first artifact never appeared"
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:  # a failed assertion leaves no process behind
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    # Killed mid-run: the capture was not yet recorded, let alone the later stages.
    stages = json.loads((out / "manifest.json").read_text())["stages"] if (out / "manifest.json").exists() else {}
    assert set(stages) < {"capture", "train", "analyze", "splice"}
    assert not (out / "splice" / "splice.json").exists()
    assert_complete(out)
    assert main(run_args(out, small_prompts)) == 0  # the same command, here in this process
    for name in stage_outputs(uninterrupted):
        assert sha256_file(out / name) == sha256_file(uninterrupted / name), name


def test_up_to_date_stages_are_skipped(
    tmp_path: Path, small_prompts: Path, uninterrupted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(run_args(out, small_prompts)) == 0
    skipped = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if "up to date" in line]
    assert skipped == ["capture", "train", "analyze", "splice", "control", "shuffled"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # A training setting re-runs train, analyze and the splice test, never the capture.
    assert main([*run_args(out, small_prompts), "--train.l1_coefficient=1e-4"]) == 0
    skipped = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if "up to date" in line]
    assert skipped == ["capture"]
    assert sha256_file(out / "train/sae.safetensors") != sha256_file(uninterrupted / "train/sae.safetensors")
    verify_manifest(out)


def test_stale_stage_is_refused(tmp_path: Path, small_prompts: Path, uninterrupted: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    assert main(["train", "--out", str(out), "--quiet", "--train.lr=0.01"]) == 0  # analyze not re-run
    with pytest.raises(ReplicationError, match=r"stage analyze is stale: made from an older train/sae\.safetensors"):
        verify_manifest(out)


def test_nan_in_activations_is_named_before_training(
    tmp_path: Path, uninterrupted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    shutil.rmtree(out / "train")
    path = out / "capture" / "activations.safetensors"
    tensors = load_file(str(path))
    tensors["sample_001"][0, 0, 5] = float("nan")
    save_file(tensors, str(path))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "error: capture/activations.safetensors: sample_001 holds NaN or inf\n"
    assert not (out / "train").exists()
