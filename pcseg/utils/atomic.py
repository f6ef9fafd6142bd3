"""Atomic file writes: a crash or a full disk never leaves a torn file where a good one was."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Open a binary file that replaces `path` only once it is completely written.

    The data go to a uniquely named temporary file in the same folder (two writers never
    share one, and the final rename stays on one file system), are flushed and fsynced,
    then renamed over `path`. On an error the temporary file is removed and `path` keeps
    its old content.

    Args:
        path: the file to write; its folder must exist.

    Yields:
        handle: a binary file object to write to.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
