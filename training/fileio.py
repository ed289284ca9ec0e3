"""Safe output files: atomic writes, an exclusive lock per output, sha256 checksums.

* `atomic_path(path)` / `atomic_write_bytes` / `atomic_write_text`: the content goes to a unique
  temporary file in the same folder (``NAME.<random>.tmp``), is flushed to disk, then renamed over
  `path` with `os.replace`. A reader sees the old file or the new one, never a partial one; two
  writers never share a temporary file (the last rename wins, both files are whole). A failed or
  interrupted write removes its temporary file.
* `exclusive_lock(path)`: `fcntl.flock` on ``PATH.lock``, non-blocking. A second process asking
  for the same lock is refused at once with `LockHeld`, whose message names the holder (pid, host,
  command, start time, read from the lock file). The kernel releases a flock when its holder dies,
  so a lock file left by a killed process never blocks.
* `sha256_bytes` / `sha256_file`: hex digests, for checksums stored beside the data.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"


class LockHeld(RuntimeError):
    """Another process holds the lock on an output; the message names it."""


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


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of `path` left by killed writers (only safe to delete while holding its lock)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{_glob_escape(path.name)}.*{TMP_SUFFIX}"))


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def _holder_text(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}, running: {info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


@contextlib.contextmanager
def exclusive_lock(path, command: str | None = None):
    """Hold an exclusive lock on output `path` (via ``PATH.lock``) for the duration of the block.

    Raises LockHeld at once, naming the holder, when another process (or another open of the
    same lock in this process) holds it. Unix only (fcntl); elsewhere the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no protection, but no failure either
        yield
        return
    path = Path(path)
    lock = lock_path(path)
    if not lock.parent.is_dir():
        raise FileNotFoundError(f"cannot lock {path}: folder {lock.parent} does not exist")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(f"{path} is in use: {lock} is held by {_holder_text(lock)}. Wait for that process to "
                           f"finish (or stop it), or choose another output.") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the lock file may have been removed by its previous holder between our open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                    command=command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:]))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        try:
            lock.unlink(missing_ok=True)  # while still holding it: a waiter that opened it retries
        finally:
            os.close(fd)
