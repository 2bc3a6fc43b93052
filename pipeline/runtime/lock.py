"""One ``sharpeye run`` per data directory.

Two supervisors on the same ``data_dir`` would start two redis-servers on one append-only
file and two sets of workers writing the same recordings: corruption, not redundancy.  The
lock is ``fcntl.flock`` on ``<data_dir>/run.lock``: the kernel drops it when the holder dies,
however it dies, so a crash never leaves a stale lock behind (unlike a pid file alone).  The
file holds the holder's pid so the refusal can name it.  It is never deleted: unlinking a lock
file races with the next process opening it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirBusy(Exception):
    """Another ``sharpeye run`` holds the data directory."""


class RunLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "run.lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(f"{self.path.parent} is already in use by another `sharpeye run` (pid {holder}); "
                              f"stop that one first, or give this config its own data_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
