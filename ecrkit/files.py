"""Reading and writing the files a user names: one reader and one writer, so every command and
filter refuses the same bad paths with the same message (the option, the path and why).

The writer replaces a file through a temporary file in its directory, so a reader sees the old
content or the new, never half of either, and a failed write leaves nothing behind. The staged
file is flushed to disk before the rename and the directory after it, so that after a power loss
the path holds the old content or the new, never an empty file (ext4 without auto_da_alloc, XFS).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile

from ecrkit.errors import FileFormatError, PathError

# Why a path cannot be used, by errno; anything else falls back to the system's own words.
REASONS = {
    errno.ENOENT: "does not exist",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of it is not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "is a symbolic link loop",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EROFS: "is on a read-only file system",
}


def _reason(exc: OSError) -> str:
    return REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def read_bytes(path: str, source: str, *, missing_ok: bool = False) -> bytes | None:
    """The file's bytes; None if it does not exist and `missing_ok`. Any other problem is a
    PathError naming `source` (the option or variable) and the path."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            kind = os.fstat(fd).st_mode
            if stat.S_ISDIR(kind):
                raise PathError(source, path, REASONS[errno.EISDIR])
            if not stat.S_ISREG(kind):
                raise PathError(source, path, "is not a regular file")
            return handle.read()
    except FileNotFoundError:
        if missing_ok and not os.path.islink(path):  # a dangling link is a mistake, not a new file
            return None
        raise PathError(source, path, REASONS[errno.ENOENT]) from None
    except OSError as exc:
        raise PathError(source, path, _reason(exc)) from None
    except ValueError:  # a NUL byte in the path
        raise PathError(source, path, "is not a valid path") from None


def read_text(path: str, source: str, *, missing_ok: bool = False) -> str | None:
    """`read_bytes` decoded by `decode`."""
    data = read_bytes(path, source, missing_ok=missing_ok)
    return None if data is None else decode(data, path, source)


def decode(data: bytes, path: str, source: str = "") -> str:
    """A file's bytes (read here, or by the probe on a host) as UTF-8 text, a BOM dropped; other
    encodings are refused, never guessed, with the offset and never the bytes."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", source) from None


def write_atomic(path: str, text: str, *, mode: int, source: str = "path", expected_sha256: str | None = None) -> None:
    """Replace `path` through a temporary file in its directory; an existing file's owner is kept."""
    write_atomic_bytes(path, text.encode("utf-8"), mode=mode, source=source, expected_sha256=expected_sha256)


def check_writable(path: str, source: str) -> None:
    """Refuse, before any work, a path the writer could not replace: its directory missing or not
    writable, or a directory in its place."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise PathError(source, path, REASONS[errno.EISDIR])
    if not os.path.isdir(directory):
        raise PathError(source, path, f"its directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:  # os.access says no for both, without a reason
            raise PathError(source, path, f"cannot be written ({directory} is on a read-only file system)")
        raise PathError(source, path, f"cannot be written (permission denied in {directory})")


def sha256_of(data: bytes | None) -> str:
    """The digest `expected_sha256` takes: of a file's bytes, or '' for no file."""
    return "" if data is None else hashlib.sha256(data).hexdigest()


def write_atomic_bytes(
    path: str, data: bytes, *, mode: int, source: str = "path", expected_sha256: str | None = None
) -> None:
    """`write_atomic` for bytes. A missing directory, a directory in the way or no permission is a
    PathError naming `source` and the path, and leaves no temporary file behind. With
    `expected_sha256` (`sha256_of` what the new content was made from), a file that holds anything
    else just before the rename is left to whoever changed it (GitLab Runner rewrites config.toml)."""
    check_writable(path, source)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        owner = os.stat(path) if os.path.exists(path) else None
        fd, partial = tempfile.mkstemp(dir=directory, prefix=".ecrkit-")
    except OSError as exc:
        raise PathError(source, path, f"cannot be written ({_reason(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(out.fileno(), owner.st_uid, owner.st_gid)
            out.flush()
            os.fsync(out.fileno())  # content, mode and owner on disk before the name points at them
        if expected_sha256 is not None and sha256_of(read_bytes(path, source, missing_ok=True)) != expected_sha256:
            raise PathError(source, path, "changed since it was read (another writer); left as it was, run again")
        os.replace(partial, path)
    except OSError as exc:
        raise PathError(source, path, f"cannot be written ({_reason(exc)}); it was left as it was") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    try:
        sync_directory(directory)
    except OSError as exc:
        raise PathError(
            source, path, f"was replaced, but its directory could not be flushed ({_reason(exc)})"
        ) from None


def sync_directory(directory: str) -> None:
    """Flush a directory's entries: a rename into it survives a power loss."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
