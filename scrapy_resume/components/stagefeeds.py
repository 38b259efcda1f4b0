"""A stage's feed files as a whole, when the stage opens: checked against
this run's FEEDS, cut back to what was committed (a document given back its
end, so that a run that writes no item to it still leaves a valid one), or
moved aside by a reset."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy_resume.components.batchfeeds import local_path, without_credentials
from scrapy_resume.components.feedformats import (
    UnframedFormat,
    compressor_for,
    feeds_with_options,
    framing_for,
)
from scrapy_resume.engine.feedfiles import FeedFiles, feed_scheme
from scrapy_resume.engine.uploads import STAGING_SUFFIX

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class FeedChanged(Exception):
    """A feed file no longer holds what the checkpoint committed to it."""


def truncate_to_committed(offsets: dict[str, int], files: FeedFiles) -> None:
    """Cut every feed back to what the checkpoint committed, before anything is written."""
    for key, committed in offsets.items():
        path = files.path(key)
        file = Path(path)
        if not file.exists():
            raise FeedChanged(
                f"The feed {path} is missing, but the checkpoint committed {committed:,} bytes to "
                f"it. Put the file back, or start the stage over with -s CHECKPOINT_RESET=1."
            )
        size = file.stat().st_size
        if size < committed:
            raise FeedChanged(
                f"The feed {path} holds {size:,} bytes, fewer than the {committed:,} the "
                f"checkpoint committed: it was changed or replaced. Restore it, or start the "
                f"stage over with -s CHECKPOINT_RESET=1."
            )
        if size > committed:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, committed)
            finally:
                os.close(fd)
            logger.info(
                "Feed %s: removed %s bytes written after the last commit; their requests "
                "will be fetched again", path, f"{size - committed:,}",
            )


class StageFeeds:
    """The feed files of a stage being opened, and of this run: checked against
    each other, cut back to what was committed, or moved aside by a reset."""

    def __init__(self, directory: str | os.PathLike[str], settings: BaseSettings,
                 spider: Spider, how: Any, crawler: Crawler | None = None):
        self.files = FeedFiles(directory)
        self.endings = self._document_endings(settings, spider, crawler)
        self.this_run = self.files.of_this_run(settings, spider.name)
        self.templated = self.files.named_by_templates(settings, spider.name)
        # a feed named with %(time)s is a new file every run: nothing to compare
        self.comparable = all("%(" not in str(uri).replace("%(name)s", "")
                              for uri in settings.getdict("FEEDS"))
        self.how = how

    def _document_endings(self, settings: BaseSettings, spider: Spider,
                          crawler: Crawler | None) -> dict[str, bytes]:
        """The end (``]``, ``</items>``, compressed if the feed is) of each of this
        run's document feeds, by key; a batched feed's by its name (batchfeeds.py)."""
        endings = {}
        for uri, options in feeds_with_options(settings):
            uri = uri.replace("%(name)s", spider.name)
            if feed_scheme(uri) in ("", "file"):
                key = self.files.key(local_path(uri))
            elif options.get("batch_item_count"):
                key = without_credentials(uri)  # its batches are staged locally
            else:
                continue
            try:
                framing = framing_for(settings, options, crawler)
                compress = compressor_for(options)
            except UnframedFormat:
                continue  # refused before the feeds are touched
            if framing.is_document:
                endings[key] = compress(framing.trailer) if compress else framing.trailer
        return endings

    def cut_back(self, committed: dict[str, int], starts: dict[str, int],
                 batches: dict[str, dict], *, only_this_run: bool = False) -> None:
        """Truncate the feeds to their committed size (``only_this_run``: only the
        files this run writes; on a shared stage the others are other workers').
        A document this run writes is given its end back at once: a run that
        exports no item to it leaves it valid; one that does cuts the end off
        again before its first item."""
        if only_this_run:
            committed = {k: v for k, v in committed.items() if k in self.this_run}
        truncate_to_committed(committed, self.files)
        ends = {key: self.endings[key] for key in committed if key in self.endings}
        for name, batch in batches.items():  # a batched feed: its current batch file
            full = batch["items"] >= batch["size"]  # (a full one has its end committed)
            if name in self.endings and batch.get("file") and not full:
                ends.setdefault(batch["file"], self.endings[name])
        for key, ending in ends.items():
            if key in committed and committed[key] > starts.get(key, 0):  # it has items
                with open(self.files.path(key), "ab") as file:
                    file.write(ending)

    def check_same_files(self, stage: str, committed: dict[str, int], summary: Any) -> None:
        """A resume writes to the files the stage committed its items to."""
        if not self.comparable:
            return
        missing = [self.files.path(key) for key in committed if key not in self.this_run]
        if missing:
            writes = ", ".join(self.this_run.values()) or "no feed"
            raise FeedChanged(
                f"Stage {stage} committed its items to {', '.join(missing)}, but this run "
                f"writes to {writes}: the items would be split between files. Resume with "
                f"the same feed ({' '.join(f'-o {os.path.relpath(p)}' for p in missing)}), "
                f"or start the stage over with {self.how.reset_option}."
            )
        for key, path in self.this_run.items():
            if key not in committed and summary.done:
                logger.warning(
                    "Feed %s is new to stage %s: it will hold only the items of requests "
                    "done from now on, not those of the %s requests done before",
                    path, stage, f"{summary.done:,}",
                )

    def move_aside(self, committed: dict[str, int]) -> None:
        """A reset: the files of the old stage that this run writes again are kept
        as backups, so the new crawl's feed holds no item of the old one."""
        again = [key for key in committed if key in self.this_run or (
            self.templated is not None and self.templated.fullmatch(self.files.path(key))
        ) or key.split(os.sep)[0].endswith(STAGING_SUFFIX)]  # (a remote feed's staged batches)
        for path, backup in self.files.move_aside(again):
            logger.warning(
                "CHECKPOINT_RESET: feed %s held the items of the old checkpoint; it was moved "
                "to %s, and the new crawl writes a new file", path, backup,
            )
