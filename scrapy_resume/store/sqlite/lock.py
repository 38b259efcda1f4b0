"""One process per stage: a kernel lock on ``STAGE.sqlite.lock``."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from scrapy_resume.store.base import CheckpointLocked
from scrapy_resume.store.privatefiles import (
    open_private,
    private_directory,
    refuse_symlink,
)


class StageLock:
    """An exclusive lock on one stage, held while a crawl has it open.

    It is a kernel lock (flock) on ``STAGE.sqlite.lock``: the kernel releases it
    when its process dies, however it dies, so a killed run never blocks the next.
    """

    def __init__(self, stage_path: Path):
        self.path = Path(f"{stage_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        private_directory(self.path.parent)
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse_symlink(self.path)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise CheckpointLocked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def held_by_another(self) -> str | None:
        """The pid of the process holding the stage, or None if nobody does."""
        if not self.path.exists():
            return None
        try:
            self.acquire()
        except CheckpointLocked as exc:
            return exc.pid or "?"
        self.release()
        return None
