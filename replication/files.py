"""One file whole or not at all, and the one-line error for a read or write the file system refuses.

Below the layers, so that the SAE and the run directory write through the same code: a file goes to a
temporary name beside it and is renamed into place, so a killed process leaves the old file or none.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from replication.errors import ReplicationError

REASONS = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EROFS: ("read-only file system", "make it writable"),
    errno.EACCES: ("permission denied", "make it writable"),
    errno.EPERM: ("operation not permitted", "make it writable"),
    errno.EIO: ("I/O error", "check the device"),
    errno.ENOENT: ("no such file", "run the stage that writes it"),
}
"""What the file system said, and what the user can do about it, by errno."""


def disk_error(exc: OSError, path: Path | str | None, doing: str = "writing") -> ReplicationError:
    """The one-line error for an OSError met while reading or writing ``path``."""
    reason, remedy = REASONS.get(exc.errno or 0, ((exc.strerror or type(exc).__name__).lower(), "fix that"))
    where = path if path is not None else exc.filename
    what = f"{reason} {doing} {where}" if where is not None else reason
    if doing == "writing":
        return ReplicationError(
            f"{what} (the run's previous state is intact; {remedy} and run the same command to resume)"
        )
    return ReplicationError(f"{what} ({remedy} and run the same command again)")


def _write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to the open file ``fd``, one ``os.write`` at a time."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # a file system that takes no more bytes and says nothing
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def replace_file(path: Path, data: bytes) -> None:
    """``data`` to a temporary file beside ``path``, renamed into place; OSErrors propagate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, whole or not at all; on failure the previous file stays and the
    error names ``path``."""
    try:
        replace_file(path, data)
    except OSError as exc:
        raise disk_error(exc, path) from None
