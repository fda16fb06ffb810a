"""The converted-model cache: a GGUF's conversion kept as a checked Hugging Face folder.

Converting takes seconds on every run; a plain folder loads in a fraction of that. An entry is
``CACHE/converted/<sha256 of the source>/<variant>/`` (the variant: dtype and converting libraries),
built under a temporary name, and checked against its ``manifest.json`` before each use
(docs/commands.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

import platformdirs
from safetensors import SafetensorError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.errors import ReplicationError
from replication.rundir import artifacts

ENV_VAR = "REPLICATION_CACHE_DIR"
MANIFEST = "manifest.json"
Status = Literal["hit", "built", "rebuilt", "not stored"]


def cache_root() -> Path:
    """``$REPLICATION_CACHE_DIR``, else the user's cache directory for this package."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("replication"))


def notice(message: str) -> None:
    print(f"model cache: {message}", file=sys.stderr)


class Entry:
    """The cache entry of one source file converted one way (``variant``)."""

    def __init__(self, source: Path, variant: str) -> None:
        self.source_sha256 = artifacts.sha256_file(source)
        self.variant = variant
        self.path = cache_root() / "converted" / self.source_sha256 / variant
        self.status: Status = "built"
        """What the cache did: served the entry, built it, rebuilt a damaged one, or could not store it."""

    def lookup(self) -> Path | None:
        """The entry's directory when it is there and intact; a damaged one is removed (with a notice)."""
        if not self.path.exists():
            return None
        problem = self.damage()
        if problem is None:
            self.status = "hit"
            return self.path
        notice(f"{self.path} is damaged ({problem}); rebuilding it")
        _remove(self.path)
        self.status = "rebuilt"
        return None

    def damage(self) -> str | None:
        """What is wrong with the entry on disk, or None when every file matches its manifest."""
        try:
            manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            listed: dict[str, str] = dict(manifest["files"])
            source = manifest["source_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"{MANIFEST} unreadable: {type(exc).__name__}"
        if source != self.source_sha256:
            return f"{MANIFEST} names another source file"
        present = _files(self.path) - {MANIFEST}
        if missing := sorted(listed.keys() - present):
            return f"{missing[0]} is missing"
        if unlisted := sorted(present - listed.keys()):
            return f"{unlisted[0]} is not in its {MANIFEST}"
        for name, digest in sorted(listed.items()):
            if artifacts.sha256_file(self.path / name) != digest:
                return f"{name} does not match its sha256"
        return None

    def store(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        """Write the entry: built in a temporary sibling directory, renamed into place when complete.
        A cache that cannot be written is noticed and left out; the run goes on without it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.variant}.", suffix=".tmp"))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            files = {name: artifacts.sha256_file(tmp / name) for name in sorted(_files(tmp))}
            manifest = {"source_sha256": self.source_sha256, "variant": self.variant, "files": files}
            artifacts.write_json(tmp / MANIFEST, manifest)
            tmp.chmod(0o755)  # mkdtemp makes it private; the files in it are 0644
            try:
                tmp.rename(self.path)
            except OSError:
                if not self.path.is_dir():  # not another process's entry, renamed in first: a real failure
                    raise
        except (OSError, ReplicationError, SafetensorError, ValueError) as exc:  # disk full, read-only, refused
            first = str(exc).splitlines()[0] if str(exc) else ""
            notice(f"cannot store {self.path} ({type(exc).__name__}: {first}); going on without it")
            self.status = "not stored"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _files(directory: Path) -> set[str]:
    """Every file under ``directory``, as paths relative to it."""
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def _remove(directory: Path) -> None:
    """Rename out of the way first, so no half-removed entry is ever found under its name."""
    trash = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".trash"))
    directory.rename(trash / directory.name)
    shutil.rmtree(trash, ignore_errors=True)
