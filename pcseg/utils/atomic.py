"""Atomic file outputs: a file appears whole under its name, or the previous one stays.

    with atomic_write("runs/x/last.pt") as handle:      # a binary file object
        torch.save(checkpoint, handle)

    with atomic_path("pred.npy") as tmp:                # a path, for writers that want one
        np.save(tmp, labels)

Both write to a unique temporary file in the destination's folder (so the final rename never
crosses file systems), flush and ``fsync`` it, ``os.replace`` it onto the destination and
``fsync`` the folder. An exception inside the block (a full disk, a file-size limit, Ctrl-C)
removes the temporary file and leaves the previous destination as it was.

``atomic_write`` opens the temporary file with ``O_TMPFILE`` where the file system supports it:
the file has no name until the write is complete, so even a process killed with SIGKILL
mid-write leaves nothing behind. It is then linked under a unique name and renamed, and only
a kill between those two calls could leave a hidden ``.<name>.<random>.tmp``. Elsewhere (and
in ``atomic_path``, whose writer needs a name) the temporary file is named
``.<name>.<random>.tmp`` (``.<stem>.<random>.tmp<suffix>`` for ``atomic_path``, since some
writers choose the format by the suffix).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_file", "atomic_path", "check_output_path", "check_output_folder"]


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """Checks, before any work, that a file can be created at ``path``.

    Args:
        path: the file to be written (its folders may not exist yet).
        what: how the error names the path (``"--out"``, ``"train.out_dir"``).

    Returns:
        path: ``path`` as a ``Path``.

    Raises:
        NotADirectoryError: naming the existing file that stands where a folder of ``path`` should be.
        IsADirectoryError: when ``path`` itself is an existing folder.
        PermissionError: when the nearest existing folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a file")
    return _check_parents(path.parent, path, what)


def check_output_folder(folder: str | Path, what: str = "output folder") -> Path:
    """Checks, before any work, that ``folder`` is or can be created as a writable folder.

    Args:
        folder: the folder to be used.
        what: how the error names it.

    Returns:
        folder: ``folder`` as a ``Path``.

    Raises:
        NotADirectoryError: naming the existing file that stands where ``folder`` or one of its
            parents should be.
        PermissionError: when the nearest existing folder is not writable.
    """
    folder = Path(folder)
    return _check_parents(folder, folder, what)


def _check_parents(folder: Path, path: Path, what: str) -> Path:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(f"{what} {path}: {existing} is an existing file, not a folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: folder {existing} is not writable")
    return path


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _open_unnamed(folder: Path) -> int | None:
    """An ``O_TMPFILE`` descriptor in ``folder``, or None where the file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)  # the kernel applies the umask
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def _link_unnamed(fd: int, name: Path) -> None:
    """Gives the ``O_TMPFILE`` file ``fd`` the name ``name`` (linkat with AT_SYMLINK_FOLLOW: ``os.link``
    uses it only when given a folder descriptor)."""
    folder = os.open(name.parent, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", name.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _new_file_mode(path: Path) -> int:
    """The mode the finished file gets: that of the file it replaces, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Opens a binary file object whose contents replace ``path`` only once the block succeeds.

    Args:
        path: the destination; its folder is created if needed.

    Yields:
        handle: a writable binary file object (a temporary file in the destination's folder).

    Raises:
        OSError: when the folder cannot be created or the write fails (the destination is then
            unchanged and no temporary file remains).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_unnamed(path.parent)
    named = None
    if fd is None:
        fd, named_str = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        named = Path(named_str)
    # a replaced file keeps its mode; a new one gets what a plain open() would give it
    os.fchmod(fd, _new_file_mode(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            if named is None:  # give the finished unnamed file a unique name, then rename it
                named = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
                _link_unnamed(handle.fileno(), named)
        os.replace(named, path)
        named = None
    finally:
        if named is not None:
            _remove_quietly(named)
    _fsync_folder(path.parent)


def atomic_write_file(path: str | Path, data: bytes | str) -> Path:
    """Writes ``data`` (text is encoded as UTF-8) to ``path`` through ``atomic_write``.

    Args:
        path: the destination; its folder is created if needed.
        data: the whole contents.

    Returns:
        path: the written file.

    Raises:
        OSError: as ``atomic_write`` (the destination is then unchanged).
    """
    with atomic_write(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path that replaces ``path`` once the block succeeds (for writers that take a name).

    The temporary name keeps ``path``'s suffix, so writers that choose the format by it
    (``np.save``, PLY writers) write the same format.

    Args:
        path: the destination; its folder is created if needed.

    Yields:
        tmp: the unique temporary file to write (it exists, empty, when the block starts).

    Raises:
        OSError: when the folder cannot be created or the write fails (the destination is then
            unchanged and no temporary file remains).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_str = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_str)
    os.chmod(tmp, _new_file_mode(path))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)  # the writer may not have synced: make the data durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_folder(path.parent)
