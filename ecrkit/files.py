"""Writing files so that a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, text: str, *, mode: int) -> None:
    """Replace `path` through a temporary file in its directory; an existing file's owner is kept."""
    write_atomic_bytes(path, text.encode("utf-8"), mode=mode)


def write_atomic_bytes(path: str, data: bytes, *, mode: int) -> None:
    """`write_atomic` for bytes."""
    directory = os.path.dirname(os.path.abspath(path))
    owner = os.stat(path) if os.path.exists(path) else None
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".ecrkit-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(partial, owner.st_uid, owner.st_gid)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
