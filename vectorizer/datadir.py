"""Who is using a data directory: an exclusive lock on ``<data dir>/.lock``.

The processes that own a data directory's catalog and snapshots for their lifetime
(``serve``, ``project``, ``up``, ``replay``) and the ones that rewrite them from outside
(``restore``) hold this lock while they run, so a restore cannot rewind the catalog under a
running server.

Contract:
- :func:`hold` takes the lock or raises :class:`DataDirInUse` at once (it never waits),
  naming the pid and command written by the holder.
- The lock is an ``flock`` on an open file: the kernel releases it when the holder's
  process ends in any way, ``kill -9`` included, so a crash never leaves a stale lock.
  The file itself stays (removing it would let two processes lock two different files).
- It guards one machine's processes; it says nothing about a shared Postgres catalog.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vectorizer.errors import DataDirInUse

LOCK_NAME = ".lock"


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_NAME


def holder(data_dir: Path) -> str | None:
    """What the last holder wrote (``"pid 123 (vectorizer serve)"``), or None if nothing is there."""
    with contextlib.suppress(OSError):
        text = lock_path(data_dir).read_text().strip()
        if text:
            pid, _, command = text.partition(" ")
            return f"pid {pid} ({command})" if command else f"pid {pid}"
    return None


@contextlib.contextmanager
def hold(data_dir: Path, command: str) -> Iterator[Path]:
    """Hold ``data_dir``'s lock for the block (creating the directory); ``command`` names the holder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(data_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(data_dir) or "a process that has not written its pid yet"
            raise DataDirInUse(f"the data directory {data_dir.resolve()} is in use by {who}; stop it first "
                               f"(or give another --data-dir)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # still locked: nobody reads a pid that is gone
    finally:
        os.close(fd)  # releases the lock
