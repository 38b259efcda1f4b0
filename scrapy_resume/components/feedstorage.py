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
and its closing bracket or tag is written when the file closes. A batched
feed's files are the stage's (batchfeeds.py); a compressed feed is one whole
compressed stream per commit. The stage's feeds as a whole (checked, cut back,
moved aside) are in stagefeeds.py.
"""

from __future__ import annotations

import logging
import os
from typing import IO, TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FileFeedStorage

from scrapy_resume.components.batchfeeds import batched_feed_name, open_batched_feed
from scrapy_resume.components.enabling import is_refused
from scrapy_resume.components.feedformats import TAKEN_OVER, compressor_for, framing_for
from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.batchedfeed import BatchView
from scrapy_resume.engine.feedbuffer import DiscardedFeed, FeedBuffer
from scrapy_resume.engine.feedfiles import reopen_at
from scrapy_resume.engine.framing import CSV, RECORDS, Framing

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

    from scrapy_resume.engine.uploads import Send

logger = logging.getLogger(__name__)


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
            return self._open_plain(spider)  # scrapy-resume is off for this crawl: plain Scrapy
        # Scrapy opens a feed that got no item when it closes, to store it empty
        # (store_empty): after the stage's last commit, with nothing to commit
        after_close = runtime.committer.closed_cleanly
        batched = bool(self.feed_options.get("batch_item_count"))
        if after_close and batched and self._batches_begun(spider, runtime):
            return DiscardedFeed()  # type: ignore[return-value]  # (its files are written)
        if not runtime.active and not after_close:
            return DiscardedFeed()  # type: ignore[return-value]
        framing = framing_for(self.crawler.settings, self.feed_options, self.crawler)
        if batched and not after_close:
            return self._open_batch_view(spider, runtime, framing)  # type: ignore[return-value]
        return self._open_whole(spider, runtime, framing, after_close)

    def _open_plain(self, spider: Spider) -> IO[bytes]:
        return super().open(spider)

    def _open_whole(self, spider: Spider, runtime: Any, framing: Framing,
                    after_close: bool) -> IO[bytes]:
        """A feed that is one file, written through the checkpoint."""
        buffer = self._open_buffer(spider, runtime, framing)
        if after_close:
            buffer.last_commit_done = True  # its header and end go straight to the file
        elif not runtime.committer.open_feed(buffer):  # its first commit failed: the crawl stops
            buffer.abandon()
            return DiscardedFeed()  # type: ignore[return-value]
        return buffer  # type: ignore[return-value]

    def _open_buffer(self, spider: Spider, runtime: Any, framing: Framing) -> FeedBuffer:
        path = os.path.abspath(self.path)
        key = runtime.feed_files.key(path)
        committed = runtime.committer.committed_feed_offset(key)
        if committed is None:  # a new feed for this stage: -o appends, -O overwrites
            file = super().open(spider)
            offset = file.tell()
        else:
            if self.write_mode == "wb":
                logger.info(
                    "Feed %s: the stage is resumed, so new items are appended (-O would wipe "
                    "the items of earlier runs)", path, extra={"spider": spider},
                )
            file = reopen_at(path, committed)
            offset = committed
        export_kwargs = self.feed_options.get("item_export_kwargs") or {}
        if framing is CSV and not export_kwargs.get("include_headers_line", True):
            framing = RECORDS
        return FeedBuffer(path, key, file, offset, framing, begun=runtime.committer.feed_begun(key),
                          compress=self._take_over_postprocessing())

    def _batches_begun(self, spider: Spider, runtime: Any) -> bool:
        """Has the stage written batch files of this feed? (If not, an empty feed
        is stored as Scrapy stores it: an empty batch 1.)"""
        assert self.crawler is not None
        name = batched_feed_name(runtime, self.crawler, spider, self.feed_options)
        return runtime.committer.current_batch(name) is not None

    def _open_batch_view(self, spider: Spider, runtime: Any, framing: Framing) -> BatchView:
        """Scrapy's batch slots export into views; the batch files are the stage's own."""
        assert self.crawler is not None
        feed = open_batched_feed(runtime, self.crawler, spider, self.feed_options, framing,
                                 self._take_over_postprocessing(), self.write_mode,
                                 self._uploader())
        view = BatchView(feed)
        runtime.committer.open_batch_view(view)
        return view

    def _uploader(self) -> Send | None:
        return None  # local batch files: nothing to upload

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
                runtime.committer.batch_view_stored(file)
            return None
        if isinstance(file, FeedBuffer):
            runtime = self._runtime()
            if file.last_commit_done:  # the stage's last commit is made: finish the file
                file.exporter_finished()
                file.close_file()
            elif runtime is None or not runtime.active:
                file.abandon()  # a commit failed
            else:
                runtime.committer.feed_stored(file)
            return None
        return self._store_plain(file)

    def _store_plain(self, file: IO[bytes]) -> Deferred[None] | None:
        return super().store(file)


# Scrapy names its feed stats after the storage class (feedexport/success_count/
# FileFeedStorage): this one keeps Scrapy's name there, so that dashboards and
# alerts keyed on those stats see no change (its repr keeps its own name).
ResumableFileFeedStorage.__name__ = "FileFeedStorage"
