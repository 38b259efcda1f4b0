"""A stage's file as a whole: created atomically, moved aside as one file.

Both are called with the stage locked. A kill at any step leaves either the
old state or the new one, never a half-made or half-moved stage.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from pathlib import Path
from typing import Any

from scrapy_resume.store.base import backup_name
from scrapy_resume.store.privatefiles import fsync_directory, private_directory
from scrapy_resume.store.sqlite.schema import COMPANIONS
from scrapy_resume.store.sqlite.store import CheckpointStore


def create_stage(
    path: str | os.PathLike[str], stage: str, spider: str, state: dict[str, Any],
    *, fsync: bool = False,
) -> CheckpointStore:
    """Create a stage whole, its configuration included.

    It is built under a temporary name and renamed into place, then the
    directory is fsynced: a kill at any step leaves either no stage (the
    next run starts fresh) or a complete one, never a half-made file that
    every later resume would refuse. Call it with the stage locked.
    """
    path = Path(path)
    private_directory(path.parent)
    for leftover in (Path(f"{path}{suffix}") for suffix in COMPANIONS):
        # orphans of a stage moved aside half-way by an older version: SQLite
        # would take them for the new stage's journal
        leftover.unlink(missing_ok=True)
    for leftover in path.parent.glob(f"{glob.escape(path.name)}.new-*"):
        leftover.unlink()  # a creation that was killed
    temp = path.with_name(f"{path.name}.new-{os.getpid()}")
    store = CheckpointStore(temp, fsync=fsync)
    try:
        store.initialize(stage, spider, state)
        # one file to rename: no WAL beside it
        store.leave_wal()
    finally:
        store.close()
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    fsync_directory(path.parent)
    return CheckpointStore(path, fsync=fsync)


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a stage to a timestamped backup, as one file, and return the new path.

    Its WAL is folded into the main file first, so the rename moves the whole
    stage at once: a kill at any step leaves either the old stage or a
    complete backup and no stage. Call it with the stage locked.
    """
    path = Path(path)
    backup = Path(backup_name(str(path), os.path.exists))
    folded = fold_wal(path)
    path.rename(backup)
    if not folded:  # a damaged file: its companions go along, after it
        for suffix in COMPANIONS:
            companion = Path(f"{path}{suffix}")
            if companion.exists():
                companion.rename(f"{backup}{suffix}")
    fsync_directory(path.parent)
    return backup


def fold_wal(path: Path) -> bool:
    """Copy the WAL into the main file and remove it; False if the file is unreadable."""
    if not any(Path(f"{path}{suffix}").exists() for suffix in COMPANIONS):
        return True
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")  # removes the WAL
        finally:
            db.close()
    except sqlite3.OperationalError:
        raise  # a full disk, an I/O error: no reset now, the stage stays as it is
    except sqlite3.DatabaseError:
        return False  # not a database any more: moved aside as it is
    return not any(Path(f"{path}{suffix}").exists() for suffix in COMPANIONS)
