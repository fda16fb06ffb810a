"""Faults from outside the program: a full disk, a failing device, a non-finite number. Each ends in
one line and exit 2, never a traceback; what was on disk before stays whole; and once the cause is
gone the same command finishes, with the bytes of a run that met no fault."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from helpers import FullDisk, assert_complete, run_args, temporary_names, writes_in_a_run
from pydantic import BaseModel

from replication.__main__ import main
from replication.config import RunConfig
from replication.rundir import artifacts
from replication.rundir.artifacts import sha256_file, stage_outputs

FULL = "(the run's previous state is intact; free space and run the same command to resume)"


def test_a_full_disk_at_every_write_in_turn_then_the_same_command_finishes(
    tmp_path: Path,
    small_prompts: Path,
    uninterrupted: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    disk = FullDisk(out)
    monkeypatch.setattr(os, "write", disk)
    capsys.readouterr()
    failures = 0
    while (code := main(run_args(out, small_prompts))) != 0 and failures < 100:
        failures += 1
        err = capsys.readouterr().err
        assert code == 2 and err == f"error: no space left on device writing {disk.last} {FULL}\n", err
        # No temporary file is left, every file is whole, and the manifest verifies.
        assert temporary_names(out) == []
        assert_complete(out)
    # Each write failed once: every stage's files, and config.yaml and manifest.json once a stage.
    assert code == 0 and failures == len(disk.failed) == writes_in_a_run(uninterrupted) == 36
    for name in stage_outputs(uninterrupted):
        assert sha256_file(out / name) == sha256_file(uninterrupted / name), name


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EDQUOT, "disk quota exceeded writing {} (the run's previous state is intact; free space or raise"),
        (errno.EROFS, "read-only file system writing {} (the run's previous state is intact; make it writable"),
        (errno.EACCES, "permission denied writing {} (the run's previous state is intact; make it writable"),
        (errno.EIO, "I/O error writing {} (the run's previous state is intact; check the device"),
    ],
)
def test_each_refusal_of_the_file_system_is_named(
    code: int,
    words: str,
    tmp_path: Path,
    small_prompts: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    disk = FullDisk(out, code)
    monkeypatch.setattr(os, "write", disk)
    capsys.readouterr()
    assert main(run_args(out, small_prompts)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words.format(disk.last)}") and err.endswith(
        " and run the same command to resume)\n"
    )
    assert temporary_names(out) == [] and disk.last == out / "capture" / "activations.safetensors"


def test_the_report_and_the_cards_on_a_full_disk_at_every_write_in_turn(
    tmp_path: Path,
    uninterrupted: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The report fails each kind of its writes once, in turn (a figure: every figure is written by
    the one ``artifacts.write_png``; verdicts.json, REPORT.md, the manifest); then the cards their
    pages and the manifest, twice, the second time over pages already there. Each time the run
    verifies, a failed page leaves the previous pages as they were, and the same command finishes.
    (The stages the cards run first are stages like the run's.)"""
    run = shutil.copytree(uninterrupted, tmp_path / "run")
    written: set[str] = set()
    report = ("figures/feature_density.png", "verdicts.json", "REPORT.md", "manifest.json")  # the last figure
    for command, only in ((["report"], report), *2 * [(["cards", "--quiet"], ("cards/", "manifest.json"))]):
        pages = {p: p.read_bytes() for p in (run / "cards").rglob("*") if p.is_file()}
        disk = FullDisk(run, only=only)
        with monkeypatch.context() as patch:
            patch.setattr(os, "write", disk)
            failures = 0
            while (code := main([*command, "--run", str(run)])) != 0 and failures < 50:
                failures += 1
                err = capsys.readouterr().err
                assert code == 2 and err.startswith(f"error: no space left on device writing {run}/"), err
                assert err.endswith(f"{FULL}\n") and temporary_names(run) == []
                assert_complete(run)
                if disk.failed[-1][0] == "cards/":  # a page failed: the previous pages, as they were
                    assert {p: p.read_bytes() for p in (run / "cards").rglob("*") if p.is_file()} == pages
        assert code == 0 and failures == len(disk.failed) > 0
        written |= {key for key, _ in disk.failed}
        capsys.readouterr()
    assert {"REPORT.md", "verdicts.json", "figures/feature_density.png", "manifest.json", "cards/"} <= written
    assert (run / "REPORT.md").is_file() and (run / "cards" / "index.html").is_file()


def test_a_device_that_fails_a_read_is_one_line(
    uninterrupted: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = uninterrupted / "capture" / "samples.json"
    real = Path.open

    def open_(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    capsys.readouterr()
    assert main(["verify", "--run", str(uninterrupted)]) == 2
    assert capsys.readouterr().err == (
        f"error: I/O error reading {failing} (check the device and run the same command again)\n"
    )


def test_an_oserror_no_writer_wrapped_is_still_one_line(
    tmp_path: Path, small_prompts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/file")

    monkeypatch.setattr(artifacts, "record_stage", refused)
    capsys.readouterr()
    assert main(run_args(tmp_path / "run", small_prompts)) == 2
    assert capsys.readouterr().err == (
        "error: no space left on device using /somewhere/file (free space and run the same command again)\n"
    )


def test_a_real_full_file_system_then_the_same_command_finishes(
    tmp_path: Path, small_prompts: Path, uninterrupted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tmpfs a quarter the size of the run: the run stops with one line where the disk filled;
    remounted larger, the same command finishes with an uninterrupted run's bytes."""
    mount = tmp_path / "small"
    mount.mkdir()
    size = sum(p.stat().st_size for p in uninterrupted.rglob("*") if p.is_file()) // 4
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        why = mounted.stderr.strip() or f"mount exited {mounted.returncode}"
        pytest.skip(reason=f"this machine lets this user mount no tmpfs: {why}")
    try:
        out = mount / "run"
        capsys.readouterr()
        assert main(run_args(out, small_prompts)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: no space left on device writing {out}/") and err.endswith(f"{FULL}\n")
        assert "\n" not in err[:-1] and temporary_names(out) == []
        assert_complete(out)
        subprocess.run(["mount", "-o", f"remount,size={size * 8}", str(mount)], check=True)
        assert main(run_args(out, small_prompts)) == 0
        for name in stage_outputs(uninterrupted):
            assert sha256_file(out / name) == sha256_file(uninterrupted / name), name
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # even while a failing test holds a file open


# ---- finite numbers only --------------------------------------------------------------------------


def float_fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """The dotted keys of every float field of the config, found by walking its sections."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += float_fields(annotation, f"{prefix}{name}.")
        elif annotation is float or (get_origin(annotation) in (Union, UnionType) and float in get_args(annotation)):
            keys.append(f"{prefix}{name}")
    return keys


def test_the_config_has_float_fields_to_test() -> None:
    assert {"train.lr", "train.l1_coefficient", "train.train_fraction"} <= set(float_fields())


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", float_fields())
def test_a_non_finite_config_value_is_refused_before_anything_is_written(
    key: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", "--profile", "tiny", f"--{key}={value}", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: config {key}={value!r}: Input should be a finite number\n"
    assert not out.exists()


def test_a_non_finite_value_in_a_profile_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"model": {"source": "random_init", "name": "x", "path": "fixtures/tiny"}}))
    profile.write_text(profile.read_text() + "train:\n  lr: .inf\n")
    assert main(["run", "--profile", str(profile), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "error: config train.lr=inf: Input should be a finite number\n"
    assert not (tmp_path / "run").exists()
