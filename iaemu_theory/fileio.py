"""Atomic file writes: the one implementation, used by the artifact writer and by every training stage.

`atomic_path(path)` yields a unique temporary file beside `path` (``NAME.<random>.tmp``); on a normal
exit it is flushed to disk and renamed over `path` with `os.replace`, on an exception it is removed.
A reader sees the old file or the new one, never a partial one; two writers never share a temporary
file (the last rename wins, both files are whole). `atomic_write_bytes` / `atomic_write_text` /
`atomic_savez` write bytes, text and numpy arrays through it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(path: Path) -> Path:
    """A new, unique, empty file beside `path` (``NAME.<random>.tmp``), for an atomic write.

    It gets the permissions `path` has (or a new file would get), not mkstemp's private 0600.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(name)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_path(path)
    except OSError:  # some file systems do not allow fsync on a folder; the rename is still atomic
        pass


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write `path` through (for writers that take a file name, like h5py).

    On a normal exit the temporary file is fsynced and renamed over `path`; on an exception
    (KeyboardInterrupt included) it is removed and `path` is left as it was.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = temporary_name(path)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path, *, compressed: bool = False, **arrays) -> None:
    """`numpy.savez` (or `savez_compressed`) of `arrays` to exactly `path`, atomically."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a name
            save(fh, **arrays)
