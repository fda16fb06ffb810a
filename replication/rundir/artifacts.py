"""Files of a run directory: atomic writes, sha256 hashes and the manifest.

Every file is written to a temporary name in its final directory and renamed into place, so a
killed run leaves either the previous complete file or none. ``manifest.json`` is written last,
after every file of the stage, and holds the sha256 of each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from replication.errors import ReplicationError
from replication.rundir import layout, provenance

METADATA_KEY = "replication"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_tree(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Text files (relative path -> text) as the whole content of ``directory``: written into a
    temporary sibling, then swapped in, so a failure leaves the previous directory as it was."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text, encoding="utf-8")
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [directory / name for name in files]


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON (two runs with equal data give equal bytes)."""
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplicationError(f"{path} is missing: run the stage that writes it first") from None
    except (ValueError, OSError) as exc:
        raise ReplicationError(f"{path} is unreadable: {type(exc).__name__}") from None


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """safetensors with the metadata as ONE sorted-JSON entry: safetensors writes a header map of
    several entries in a per-process random order, which would break byte-identical reruns."""
    contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
    header = {METADATA_KEY: json.dumps(metadata, sort_keys=True)} if metadata else None
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=header))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ReplicationError(f"{path} is missing: run the stage that writes it first")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ReplicationError(f"{path} is unreadable: {type(exc).__name__}") from None


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_text(run_dir / layout.CONFIG, yaml.safe_dump(config, sort_keys=False))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / layout.MANIFEST
    return read_json(path) if path.is_file() else {}


def verify_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, after checking every listed file against its sha256; one-line errors."""
    path = run_dir / layout.MANIFEST
    if not path.is_file():
        raise ReplicationError(f"{path} is missing: {run_dir} is not a finished run")
    manifest: dict[str, Any] = read_json(path)
    for name, digest in sorted(manifest.get("files", {}).items()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ReplicationError(f"{path} lists {name!r}, a path outside the run directory")
        file = run_dir / name
        if not file.is_file():
            raise ReplicationError(f"{file} is listed in the manifest but missing")
        if sha256_file(file) != digest:
            raise ReplicationError(f"{file} does not match its sha256 in the manifest (changed after the run)")
    for stage, record in manifest.get("stages", {}).items():
        for name, digest in record.get("inputs", {}).items():
            if name in manifest["files"] and manifest["files"][name] != digest:
                raise ReplicationError(f"{run_dir}: stage {stage} is stale: made from an older {name}; re-run it")
    return manifest


def stage_is_current(run_dir: Path, stage: str, stage_hash: str, digest: Callable[[str], str | None]) -> bool:
    """True when the manifest records ``stage`` with this config hash, every input it read still has
    the sha256 it had then (``digest(name)``), and every output it wrote is still there, unchanged."""
    manifest = read_manifest(run_dir)
    record = manifest.get("stages", {}).get(stage)
    if not record or record.get("stage_hash") != stage_hash:
        return False
    if any(digest(name) != recorded for name, recorded in record.get("inputs", {}).items()):
        return False
    files = manifest.get("files", {})
    return all(
        name in files and (run_dir / name).is_file() and sha256_file(run_dir / name) == files[name]
        for name in record.get("outputs", [])
    )


def record_stage(
    run_dir: Path,
    stage: str,
    *,
    files: list[Path],
    config: dict[str, Any],
    config_hash: str,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Add a finished stage (its files' sha256 and facts) to the manifest, written last."""
    manifest = read_manifest(run_dir)
    manifest.update(config=config, config_hash=config_hash)
    hashes = {str(f.relative_to(run_dir)): sha256_file(f) for f in [run_dir / layout.CONFIG, *files]}
    manifest.setdefault("files", {}).update(hashes)
    manifest.setdefault("stages", {})[stage] = {
        "config_hash": config_hash,
        **info,
        "environment": provenance.environment(),
    }
    write_json(run_dir / layout.MANIFEST, manifest)
    return manifest


def record_addition(
    run_dir: Path, stage: str, files: list[Path], info: dict[str, Any], replaces: str | None = None
) -> None:
    """Record files that a later step (seeds, ablations, report) added to a finished run; with
    ``replaces``, a directory the step rewrote as a whole, its earlier files are forgotten first."""
    manifest = read_manifest(run_dir)
    if replaces is not None:
        listed = manifest.get("files", {})
        manifest["files"] = {name: d for name, d in listed.items() if not name.startswith(f"{replaces}/")}
        write_json(run_dir / layout.MANIFEST, manifest)
    record_stage(run_dir, stage, files=files, config=manifest["config"], config_hash=manifest["config_hash"], info=info)


def stage_outputs(run_dir: Path) -> list[str]:
    """The files the pipeline's stages wrote, in stage order, as the manifest records them."""
    stages = read_manifest(run_dir).get("stages", {})
    return [name for stage in layout.STAGES for name in stages.get(stage, {}).get("outputs", [])]
