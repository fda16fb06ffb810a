"""Files of a run directory: JSON and safetensors I/O, sha256 hashes and the manifest.

Every file is written whole or not at all (``replication.files``); ``manifest.json`` is written last,
after every file of the stage, and holds the sha256 of each, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from replication.errors import ReplicationError
from replication.files import atomic_write, disk_error, replace_file
from replication.rundir import layout, provenance

METADATA_KEY = "replication"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise  # the callers that hash a file which may be absent look first
    except OSError as exc:
        raise disk_error(exc, path, "reading") from None
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_png(path: Path, figure: Any, **savefig: Any) -> None:
    """A matplotlib figure as PNG bytes, written as every other artifact is."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig)
    atomic_write(path, buffer.getvalue())


def write_tree(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Text files (relative path -> text) as the whole content of ``directory``: written into a
    temporary sibling, then swapped in, so a failure leaves the previous directory as it was."""
    staging: Path | None = None
    name = ""
    old = directory.with_name(f".{directory.name}.old")
    try:
        if old.is_dir() and not directory.exists():  # a swap that died half-way: the old one is back
            old.rename(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        staging.chmod(0o755)  # mkdtemp makes it private; the pages are meant to be shared
        for name, text in files.items():
            replace_file(staging / name, text.encode("utf-8"))
        name = ""
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        try:
            staging.rename(directory)
        except OSError:
            if old.is_dir():
                old.rename(directory)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise disk_error(exc, directory / name if name else directory) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return [directory / name for name in files]


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (the same bytes, no space), else as a copy written
    as every artifact is."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        return
    except FileExistsError:
        return
    except OSError:  # another file system, or links refused: a copy holds the same bytes
        pass
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise disk_error(exc, source, "reading") from None
    atomic_write(target, data)


def _non_finite(data: Any, where: str = "") -> Iterator[str]:
    """Where ``data`` holds NaN or an infinity, as JSON paths."""
    if isinstance(data, float) and not math.isfinite(data):
        yield where or "the top level"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            yield from _non_finite(value, f"{where}[{index}]")


def json_text(data: Any, path: Path) -> str:
    """Deterministic JSON (equal data give equal text), of finite numbers only: JSON has no NaN or
    infinity, so one is refused, naming where it is."""
    try:
        return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:
        where = next(_non_finite(data), "a value")
        raise ReplicationError(f"{path}: {where} is not a finite number; nothing was written") from None


def write_json(path: Path, data: Any) -> None:
    write_text(path, json_text(data, path))


def original_format(records: list[dict[str, Any]], activations: list[torch.Tensor]) -> list[dict[str, Any]]:
    """The original's ``activations_data.json``: per prompt, its prompt, generated text and activations."""
    return [
        {"prompt": r["prompt"], "generated_text": r["generated_text"], "activations": a.tolist()}
        for r, a in zip(records, activations, strict=True)
    ]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplicationError(f"{path} is missing: run the stage that writes it first") from None
    except ValueError as exc:
        raise ReplicationError(f"{path} is unreadable: {type(exc).__name__}") from None
    except OSError as exc:
        raise disk_error(exc, path, "reading") from None


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """safetensors with the metadata as ONE sorted-JSON entry: safetensors writes a header map of
    several entries in a per-process random order, which would break byte-identical reruns."""
    contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
    header = {METADATA_KEY: json.dumps(metadata, sort_keys=True)} if metadata else None
    atomic_write(path, safetensors_bytes(contiguous, metadata=header))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ReplicationError(f"{path} is missing: run the stage that writes it first")
    try:
        return load_file(str(path))
    except OSError as exc:
        raise disk_error(exc, path, "reading") from None
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
        if not file.is_file() and not layout.committed(name):
            continue  # recorded, and left out of the committed reference
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


def forget_addition(run_dir: Path, step: str, names: list[str], *, stale_only: bool = False) -> None:
    """Drop a later step's record and its files from the manifest (with ``stale_only``, only where an
    input it recorded has changed since): a stale record would refuse every run that renews it."""
    if not (run_dir / layout.MANIFEST).is_file():
        return
    manifest = read_manifest(run_dir)
    recorded = manifest.get("stages", {}).get(step, {}).get("inputs", {})
    if stale_only and all(manifest.get("files", {}).get(name) == digest for name, digest in recorded.items()):
        return
    manifest.get("stages", {}).pop(step, None)
    manifest["files"] = {name: digest for name, digest in manifest.get("files", {}).items() if name not in names}
    write_json(run_dir / layout.MANIFEST, manifest)


def stage_outputs(run_dir: Path) -> list[str]:
    """The files the pipeline's stages wrote, in stage order, as the manifest records them."""
    stages = read_manifest(run_dir).get("stages", {})
    return [name for stage in layout.STAGES for name in stages.get(stage, {}).get("outputs", [])]
