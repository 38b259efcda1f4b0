"""Exactly-once file feeds.

The exporter writes into a :class:`FeedBuffer`, not into the file. Right after
each item is exported, the spider middleware hands the staged bytes to the
request that produced the item; they reach the file only at the commit that
marks that request done, and the file's new size is recorded in that same
transaction. On resume each feed is truncated back to its recorded size, so
the bytes of requests that were not done disappear and are written again when
those requests are fetched again. Nothing is lost, nothing is duplicated, and
no partial line survives.

Each item's bytes are one record of the format's framing (feedformats.py): a
JSON array or an XML document is continued after its last committed record,
and its closing bracket or tag is written when the file closes. Batched feeds
and post-processing are refused at start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FileFeedStorage

from scrapy_resume.components.batchfeeds import open_batched_feed
from scrapy_resume.components.enabling import is_refused
from scrapy_resume.components.feedformats import TAKEN_OVER, compressor_for, framing_for
from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.batchedfeed import BatchView
from scrapy_resume.engine.feedbuffer import DiscardedFeed, FeedBuffer
from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.engine.framing import CSV, RECORDS, Framing

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings
    from twisted.internet.defer import Deferred

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
                 spider: Spider, how: Any):
        self.files = FeedFiles(directory)
        self.this_run = self.files.of_this_run(settings, spider.name)
        self.templated = self.files.named_by_templates(settings, spider.name)
        # a feed named with %(time)s is a new file every run: nothing to compare
        self.comparable = all("%(" not in str(uri).replace("%(name)s", "")
                              for uri in settings.getdict("FEEDS"))
        self.how = how

    def cut_back(self, committed: dict[str, int], *, only_this_run: bool = False) -> None:
        """Truncate the feeds to their committed size (``only_this_run``: only the
        files this run writes; on a shared stage the others are other workers')."""
        if only_this_run:
            committed = {k: v for k, v in committed.items() if k in self.this_run}
        truncate_to_committed(committed, self.files)

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
        )]
        for path, backup in self.files.move_aside(again):
            logger.warning(
                "CHECKPOINT_RESET: feed %s held the items of the old checkpoint; it was moved "
                "to %s, and the new crawl writes a new file", path, backup,
            )


class ResumableFileFeedStorage(FileFeedStorage):
    """A file feed storage that writes through the checkpoint. Plain paths and ``file://``."""

    def __init__(
        self,
        uri: str,
        *,
        feed_options: dict[str, Any] | None = None,
        crawler: Crawler | None = None,
    ):
        super().__init__(uri, feed_options=feed_options)
        self.crawler = crawler
        self.feed_options = feed_options or {}

    @classmethod
    def from_crawler(
        cls, crawler: Crawler, uri: str, *, feed_options: dict[str, Any] | None = None
    ) -> ResumableFileFeedStorage:
        return cls(uri, feed_options=feed_options, crawler=crawler)

    def _runtime(self) -> Any:
        return runtime_of(self.crawler) if self.crawler is not None else None

    def open(self, spider: Spider) -> IO[bytes]:
        runtime = self._runtime()
        if runtime is None:
            if self.crawler is not None and is_refused(self.crawler):
                return DiscardedFeed()  # type: ignore[return-value]
            return super().open(spider)  # scrapy-resume is off for this crawl: plain Scrapy
        if not runtime.active:
            return DiscardedFeed()  # type: ignore[return-value]
        framing = framing_for(self.crawler.settings, self.feed_options, self.crawler)
        if self.feed_options.get("batch_item_count"):
            return self._open_batch_view(spider, runtime, framing)  # type: ignore[return-value]
        path = os.path.abspath(self.path)
        key = runtime.feed_files.key(path)
        committed = runtime.committed_feed_offset(key)
        if committed is None:  # a new feed for this stage: -o appends, -O overwrites
            file = super().open(spider)
            offset = file.tell()
        else:
            if self.write_mode == "wb":
                logger.info(
                    "Feed %s: the stage is resumed, so new items are appended (-O would wipe "
                    "the items of earlier runs)", path, extra={"spider": spider},
                )
            file = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND), "ab")
            offset = committed
        export_kwargs = self.feed_options.get("item_export_kwargs") or {}
        if framing is CSV and not export_kwargs.get("include_headers_line", True):
            framing = RECORDS
        buffer = FeedBuffer(path, key, file, offset, framing, begun=runtime.feed_begun(key),
                            compress=self._take_over_postprocessing())
        if not runtime.open_feed(buffer):  # its first commit failed: the crawl stops
            buffer.abandon()
            return DiscardedFeed()  # type: ignore[return-value]
        return buffer  # type: ignore[return-value]

    def _open_batch_view(self, spider: Spider, runtime: Any, framing: Framing) -> BatchView:
        """Scrapy's batch slots export into views; the batch files are the stage's own."""
        assert self.crawler is not None
        feed = open_batched_feed(runtime, self.crawler, spider, self.feed_options, framing,
                                 self._take_over_postprocessing(), self.write_mode)
        view = BatchView(feed)
        runtime.open_batch_view(view)
        return view

    def _take_over_postprocessing(self) -> Any:
        """Compress each commit ourselves, as whole streams a resume can cut back to.

        Scrapy's FeedSlot wraps the file this storage opens in its
        PostProcessingManager when ``postprocessing`` is in the feed's options,
        checking right after ``open()`` returns, in the options dict it shares
        with this storage: taking the plugins out of it here keeps Scrapy from
        compressing a second time (test_document_feeds.py's gzip test fails
        loudly if that changes)."""
        compress = compressor_for(self.feed_options)
        if "postprocessing" in self.feed_options:
            self.feed_options[TAKEN_OVER] = self.feed_options.pop("postprocessing")
        return compress

    def store(self, file: IO[bytes]) -> Deferred[None] | None:
        if isinstance(file, DiscardedFeed):
            return None
        if isinstance(file, BatchView):
            runtime = self._runtime()
            if runtime is not None:
                runtime.batch_view_stored(file)
            return None
        if isinstance(file, FeedBuffer):
            runtime = self._runtime()
            if file.last_commit_done:
                file.exporter_finished()  # the crawl's last commit is made: finish the file
            elif runtime is None or not runtime.active:
                file.abandon()  # a commit failed
            else:
                runtime.feed_stored(file)
            return None
        return super().store(file)


# Scrapy names its feed stats after the storage class (feedexport/success_count/
# FileFeedStorage): this one keeps Scrapy's name there, so that dashboards and
# alerts keyed on those stats see no change (its repr keeps its own name).
ResumableFileFeedStorage.__name__ = "FileFeedStorage"
