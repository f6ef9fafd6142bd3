"""Atomic file writes: a reader sees the previous file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; move it onto `path` on success.

    The temporary file has a unique name in the same folder (a rename across file systems is
    not atomic), is flushed and fsynced before the rename, and is removed when the body
    raises, so a failed write leaves the previous file intact and no temporary file behind.

    Args:
        path: the file to write; its folder must exist.

    Yields:
        handle: a binary file object open for writing.

    Raises:
        FileNotFoundError: when the folder of `path` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the output file does not exist: {path.parent}")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            # mkstemp makes the file private (0600); give it the mode a plain open() would
            os.fchmod(handle.fileno(), _new_file_mode(path))
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def _new_file_mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    # the rename lives in the folder's entry table: without this a power cut may undo it
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the file itself is already synced
    finally:
        os.close(descriptor)
