"""Safe output files: atomic writes, an exclusive lock per output, sha256 checksums.

* `atomic_path(path)` / `atomic_write_bytes` / `atomic_write_text` / `atomic_savez`: atomic writes,
  defined once in `iaemu_theory.fileio` (the artifact writer uses them too) and re-exported here.
  `stale_temporaries` lists the temporary files of killed writers.
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
import time
from pathlib import Path

from iaemu_theory.fileio import (TMP_SUFFIX, _umask, atomic_path, atomic_savez, atomic_write_bytes,
                                 atomic_write_text, temporary_name)

__all__ = ["LOCK_SUFFIX", "TMP_SUFFIX", "LockHeld", "atomic_path", "atomic_savez", "atomic_write_bytes",
           "atomic_write_text", "exclusive_lock", "lock_path", "sha256_bytes", "sha256_file", "stale_temporaries",
           "temporary_name", "_umask"]

LOCK_SUFFIX = ".lock"


class LockHeld(RuntimeError):
    """Another process holds the lock on an output; the message names it."""


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of `path` left by killed writers (only safe to delete while holding its lock)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{_glob_escape(path.name)}.*{TMP_SUFFIX}"))


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


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
