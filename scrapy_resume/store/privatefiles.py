"""The checkpoint directory is private, like ``~/.ssh``.

A checkpoint holds what requests hold (cookies, Authorization headers) and
pickles, which are code: whoever can write in the directory can plant a
request that runs as you on the next resume, or a symlink that makes a
crawl overwrite another of your files. So the directory must be yours and
writable by nobody else, its files are created 0600 with ``O_EXCL``, and no
file in it is opened through a symlink.

Files that must appear whole (a new stage, the signing secret) are written
under a temporary name, fsynced, and renamed or linked into place, and the
directory is fsynced: a kill at any step leaves either no file or the whole one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: Flags that refuse a symlink where a file is expected (0 where the OS has none).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class CheckpointUnsafe(Exception):
    """The checkpoint directory, or a file in it, could be controlled by someone else."""


def private_directory(directory: Path) -> None:
    """Create ``directory`` (0700), or check that an existing one is safe to use."""
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    info = os.stat(directory)  # (a symlink to a directory of one's own is fine, as for ssh)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and info.st_uid != uid:
        raise CheckpointUnsafe(
            f"The checkpoint directory {directory} belongs to another user (uid {info.st_uid}): "
            f"whoever owns it can plant a stored request that runs code as you on resume. "
            f"Use a directory of your own: set CHECKPOINT_DIR (or --dir) to one."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CheckpointUnsafe(
            f"The checkpoint directory {directory} is writable by its group or by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}): they could plant a stored request that "
            f"runs code as you on resume. Check what is in it, then: chmod 700 {directory}"
        )
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700)  # readable by others: cookies and tokens; tighten it


def refuse_symlink(path: Path) -> None:
    """Raise if ``path`` is a symlink (for files opened by code that follows them, SQLite)."""
    if path.is_symlink():
        raise CheckpointUnsafe(
            f"{path} is a symbolic link: a checkpoint file is never opened through one "
            f"(it could point at any file of yours). Remove the link."
        )


def create_private_file(path: Path) -> int:
    """A new file, 0600 from its first moment; raises FileExistsError if there is one."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)


def open_private(path: Path, flags: int) -> int:
    """Open a file of the checkpoint directory (created 0600), never through a symlink."""
    return os.open(path, flags | NOFOLLOW, 0o600)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new name in ``directory`` survive a power cut."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # (not possible on every OS: Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> bool:
    """Publish ``data`` at ``path`` whole, unless a file is there already (then False).

    Written under a temporary name, fsynced, then hard-linked into place: a link
    never replaces an existing file, so of two processes racing, one wins and
    the other reads the winner's file; a reader never sees a partial file.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    fd = create_private_file(temp)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        temp.unlink()
    if created:
        fsync_directory(path.parent)
    return created
