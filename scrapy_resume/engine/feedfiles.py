"""Naming a stage's feed files: which local files a run writes, and the name
each one has in the checkpoint."""

from __future__ import annotations

import os
import re
from typing import IO, TYPE_CHECKING
from urllib.parse import urlparse

from w3lib.url import file_uri_to_path

from scrapy_resume.store.base import backup_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scrapy.settings import BaseSettings


#: A URI template's parameter: ``%(batch_id)d``, ``%(batch_id)05d``, ``%(time)s``...
PARAMETER = re.compile(r"%\([^)]+\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")


def feed_scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme
    return "" if len(scheme) == 1 else scheme  # a Windows drive letter is a plain path


class FeedFiles:
    """Where a stage's feed files are, and how they are named in the checkpoint.

    A feed is recorded by its path relative to the checkpoint directory, so a
    project moved or copied together with its checkpoints resumes its own
    files and never touches the original folder's. (Stages recorded by older
    versions hold absolute paths, which resolve to themselves.)
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.base = os.path.abspath(directory)

    def key(self, path: str) -> str:
        try:
            return os.path.relpath(os.path.abspath(path), self.base)
        except ValueError:  # another drive, on Windows
            return os.path.abspath(path)

    def path(self, key: str) -> str:
        return os.path.normpath(os.path.join(self.base, key))

    def of_this_run(self, settings: BaseSettings, spider_name: str) -> dict[str, str]:
        """key -> path of every local file feed this run writes, when its name does not
        change from run to run (``%(time)s`` does)."""
        files = {}
        for uri in settings.getdict("FEEDS"):
            uri = str(uri)
            if feed_scheme(uri) not in ("", "file"):
                continue
            uri = uri.replace("%(name)s", spider_name)
            if "%(" in uri:
                continue
            path = os.path.abspath(file_uri_to_path(uri) if uri.startswith("file:") else uri)
            files[self.key(path)] = path
        return files

    def named_by_templates(self, settings: BaseSettings, spider_name: str) -> re.Pattern | None:
        """Which paths this run's templated local feeds (``%(batch_id)d``,
        ``%(time)s``...) can name, any parameter standing for any text."""
        patterns = []
        for uri in settings.getdict("FEEDS"):
            uri = str(uri).replace("%(name)s", spider_name)
            if feed_scheme(uri) not in ("", "file") or "%(" not in uri:
                continue
            path = os.path.abspath(file_uri_to_path(uri) if uri.startswith("file:") else uri)
            patterns.append(".+?".join(re.escape(part) for part in PARAMETER.split(path)))
        return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def move_aside(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        """Rename each existing file to a backup; ``[(path, backup)]``."""
        moved = []
        for key in keys:
            path = self.path(key)
            if os.path.exists(path):
                backup = backup_name(path, os.path.exists)
                os.rename(path, backup)
                moved.append((path, backup))
        return moved


def reopen_at(path: str, offset: int, *, create: bool = False) -> IO[bytes]:
    """A feed file cut back to ``offset`` (where a commit left it, or where a new
    batch file begins) and opened to append. Without ``create``, a missing file
    is an error, never a new empty file under a committed offset."""
    if os.path.exists(path) and os.path.getsize(path) > offset:
        os.truncate(path, offset)  # (-O, or the end a document was given back)
    flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
    return os.fdopen(os.open(path, flags, 0o666), "ab")
