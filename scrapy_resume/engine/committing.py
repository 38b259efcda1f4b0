"""The commit: what makes completed requests durable.

When the batch commits items, the pipelines' commit hook runs first (see
commithook.py: a pipeline writes its buffered items, and the commit waits).
Then the feed bytes of done requests reach their files, and the batch that
marks them done (built by the BatchBuilder) goes to the store in one
transaction, with the feeds' new sizes. A failed commit stops the crawl:
nothing more is written. One commit at a time: while a hook is running, what
completes waits for the next one.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future

from scrapy_resume.engine.batchedfeed import BatchedFeed
from scrapy_resume.engine.commithook import CommitHook
from scrapy_resume.engine.uploads import BatchUploads
from scrapy_resume.store.records import CommitBatch

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

    from scrapy_resume.config import CheckpointConfig
    from scrapy_resume.engine.batchedfeed import BatchFiles, FeedWriter
    from scrapy_resume.engine.batching import BatchBuilder
    from scrapy_resume.engine.completion import StartItems
    from scrapy_resume.engine.feedbuffer import ExportedBytes, FeedBuffer
    from scrapy_resume.engine.framing import Framing
    from scrapy_resume.store.base import BaseCheckpointStore
    from scrapy_resume.store.redis.leases import StageWorker

logger = logging.getLogger(__name__)

#: Seconds between two samples of the stage's counts (a commit takes one when due,
#: at every commit of a run's first seconds, and the close takes the last): the
#: HTML report's progress over time
PROGRESS_EVERY = 5.0
PROGRESS_DETAILED_FOR = 30.0


async def close_spider(crawler: Crawler, reason: str) -> None:
    engine = crawler.engine
    if hasattr(engine, "close_spider_async"):
        await engine.close_spider_async(reason=reason)
    else:  # Scrapy 2.13
        await engine.close_spider(crawler.spider, reason)


class Committer:
    def __init__(
        self, crawler: Crawler, config: CheckpointConfig, batches: BatchBuilder,
        start_items: StartItems,
    ):
        self.crawler = crawler
        self.config = config
        self.stats = crawler.stats
        self.batches = batches
        self.start_items = start_items
        self.store: BaseCheckpointStore | None = None
        self.worker: StageWorker | None = None
        self.active = False  # True between a successful open and the close
        self.closed_cleanly = False  # the stage's last commit is made, its feeds closed
        self.feeds: list[ExportedBytes] = []  # what exporters write into, item by item
        self.writers: list[FeedWriter] = []  # what writes the feed files at each commit
        self.feed_batches: dict[str, dict] = {}  # each batched feed's current batch
        self.batched: dict[str, BatchedFeed] = {}  # by name (see BatchedFeed)
        self.uploads = BatchUploads(crawler.stats)  # a remote batched feed's batches
        self.feed_offsets: dict[str, int] = {}  # committed size of each feed file, by key
        self.feed_starts: dict[str, int] = {}  # where the stage's output begins in each
        self.counter_totals: dict[str, int] = {}
        self.settled_this_run = 0  # committed settlements: the progress line's rate
        self.last_commit = 0.0
        self.last_sample = 0.0
        self.started = 0.0  # when the stage opened (start())
        self.hook = CommitHook(crawler)
        self.in_progress: Deferred | None = None  # a commit waiting for its hook

    def start(self, store: BaseCheckpointStore, worker: StageWorker | None) -> None:
        self.store = store
        self.worker = worker
        self.counter_totals = store.counters()
        self.feed_offsets = store.feed_offsets()
        self.feed_starts = store.feed_starts()
        self.feed_batches = store.state().get("feed_batches", {})
        self.started = time.monotonic()
        self.active = True

    # feeds

    def committed_feed_offset(self, key: str) -> int | None:
        return self.feed_offsets.get(key)

    def feed_begun(self, key: str) -> bool:
        """Does the feed file hold this stage's output already (its header, if the
        format has one, and records)? Only the first commit of records writes there."""
        offset = self.feed_offsets.get(key)
        if offset is None:
            return False
        # a feed recorded by an older version: it began at the start of the file
        return offset > self.feed_starts.get(key, 0)

    def open_feed(self, buffer: FeedBuffer) -> bool:
        """Write ``buffer`` through the checkpoint; False if its first commit failed."""
        if buffer.key not in self.feed_offsets:
            try:
                self.commit_starts({buffer.key: buffer.committed_offset})
            except Exception as exc:
                self.stop_after_failed_commit(exc)
                return False
        self.feeds.append(buffer)
        self.writers.append(buffer)
        return True

    def current_batch(self, name: str) -> dict | None:
        """A batched feed's current batch, as committed: {batch, items, file, size}."""
        return self.feed_batches.get(name)

    def add_batched_feed(self, name: str, size: int, framing: Framing, files: BatchFiles,
                         current: FeedBuffer | None, upcoming: list[FeedBuffer]) -> BatchedFeed:
        feed = BatchedFeed(name, size, framing, files, self.feed_batches, current, upcoming)
        self.batched[name] = feed
        self.writers.append(feed)
        return feed

    def open_batch_view(self, view: ExportedBytes) -> None:
        """One of Scrapy's batch slots of a batched feed starts exporting."""
        self.feeds.append(view)

    def batch_view_stored(self, view: ExportedBytes) -> None:
        """Scrapy closed that slot: its trailer is not ours, and it exports no more."""
        view.exporter_finished()
        if view in self.feeds:
            self.feeds.remove(view)

    def commit_starts(self, starts: dict[str, int], state: dict | None = None) -> None:
        """Record where new feed files start, before their first byte is written."""
        assert self.store is not None
        self.store.commit(CommitBatch(feed_offsets=starts, feed_starts=starts, state=state or {}))
        self.feed_offsets.update(starts)
        self.feed_starts.update(starts)

    def feed_stored(self, buffer: FeedBuffer) -> None:
        """The exporter is finished with ``buffer``; the file closes after the last commit."""
        leftover = buffer.exporter_finished()
        if leftover:
            self.batches.loose_output([(buffer, leftover)], items=0)

    def record_state(self, state: dict) -> None:
        """Commit entries of the package's own state, outside the request commits."""
        assert self.store is not None
        self.store.commit(CommitBatch(state=state))

    def close_feeds(self) -> None:
        for writer in self.writers:
            writer.close_file(self.config.fsync)
        self.feeds, self.writers = [], []
        self.closed_cleanly = True

    def abandon_feeds(self) -> None:
        """A commit failed: close the feeds, writing nothing that was not committed."""
        for writer in self.writers:
            writer.abandon()
        self.feeds, self.writers = [], []

    # committing

    def commit_or_stop(self) -> None:
        try:
            self.commit()
        except Exception as exc:
            self.stop_after_failed_commit(exc)

    def stop_after_failed_commit(self, error: Exception) -> None:
        """A commit failed (a full disk, an I/O error). Its transaction rolled back,
        so everything committed before is intact and resumable; carrying on would
        crawl unprotected (and write feed bytes twice), so nothing more is written
        and the spider closes."""
        if not self.active:
            return
        logger.error(
            "Checkpoint commit failed (%s); stopping the crawl. Everything committed "
            "before this point is resumable with -s CHECKPOINT_RESUME=1.",
            error, exc_info=True, extra={"spider": self.crawler.spider},
        )
        self.stats.inc_value("checkpoint/commit_errors")
        self.active = False
        self.abandon_feeds()
        deferred_from_coro(close_spider(self.crawler, "checkpoint_write_error"))

    def commit(self) -> None:
        """Make every completed request durable, with all of its consequences.

        With a commit hook to run, the commit ends later (a failure then stops the
        crawl); a commit called while one is in progress is left to the next one."""
        if self.store is None or not self.active or self.in_progress is not None:
            return
        started = time.monotonic()
        batch = self.batches.build(self.start_items, self._fenced())
        item_ids = self.batches.item_ids
        if self.hook.wanted(item_ids):
            waiting = deferred_from_coro(self._commit_after_hook(batch, item_ids, started))
            if not waiting.called:  # (the coroutine clears it when it ends)
                self.in_progress = waiting
            return
        self._commit_timed(batch, started)

    async def commit_async(self) -> None:
        """The commit of the close path: after the one in progress, and with its
        hook awaited; raises if it fails."""
        if self.in_progress is not None:
            await maybe_deferred_to_future(self.in_progress)  # (a failure stopped the crawl)
        if self.store is None or not self.active:
            return
        started = time.monotonic()
        batch = self.batches.build(self.start_items, self._fenced())
        if self.hook.wanted(self.batches.item_ids):
            await self.hook.run(self.batches.item_ids)
        self._commit_timed(batch, started, final=True)

    async def _commit_after_hook(self, batch: CommitBatch, item_ids: list[str],
                                 started: float) -> None:
        try:
            await self.hook.run(item_ids)
            if self.active:  # (not if the crawl stopped meanwhile)
                self._commit_timed(batch, started)
        except Exception as exc:
            self.stop_after_failed_commit(exc)
        finally:
            self.in_progress = None

    def _fenced(self) -> frozenset[str]:
        """On a shared queue, before a batch is built: the leases of its requests that
        this worker lost (paused past their expiry, so another worker fetched them
        again). Their results are cut from the batch: each item once, across workers."""
        if self.worker is None:
            return frozenset()
        leases = self.batches.leases_ready()
        lost = self.worker.fence(leases) if leases else []
        if lost:
            self.stats.inc_value("checkpoint/leases_lost", len(lost))
            logger.warning(
                "This worker lost %d lease(s): it was paused (frozen, stopped, swapped out) "
                "for longer than CHECKPOINT_LEASE_SECONDS=%s, and other workers took those "
                "requests back; their results here are dropped, so that each item is written "
                "once. If such pauses are expected, set CHECKPOINT_LEASE_SECONDS above them.",
                len(lost), self.config.lease_seconds, extra={"spider": self.crawler.spider},
            )
        return frozenset(lost)

    def _called_off(self, batch: CommitBatch, lost: int) -> None:
        """The commit script found a lease lost since the fence (this worker froze in
        between) and wrote nothing. Its feed bytes are cut from the files, and the
        requests it would have settled go back to the queue (they are fetched again,
        their items written once); items not tied to a request wait for the next one."""
        assert self.worker is not None
        self.stats.inc_value("checkpoint/commits_called_off")
        self.stats.inc_value("checkpoint/leases_lost", lost)
        logger.warning("A commit was called off: a lease was lost while it was being made "
                       "(this worker was paused); its requests go back to the queue",
                       extra={"spider": self.crawler.spider})
        if not all(hasattr(writer, "back_out") for writer in self.writers):
            # (a batched feed cannot take a batch back: stop, as after a failed commit)
            self.stop_after_failed_commit(RuntimeError("a commit called off by a lost lease"))
            return
        for writer in self.writers:
            writer.back_out()  # type: ignore[attr-defined]
        self.worker.requeue([s.lease for s in batch.settlements if s.lease is not None])
        self.batches.loose_feed_bytes[:0] = self.batches.built_loose_bytes

    def _commit_timed(self, batch: CommitBatch, started: float, final: bool = False) -> None:
        self._commit(batch, final)
        self.stats.inc_value("checkpoint/commit_seconds", time.monotonic() - started)

    def _commit(self, batch: CommitBatch, final: bool = False) -> None:
        assert self.store is not None
        if self.worker is not None:
            batch.released_leases.extend(self.worker.releases())
            batch.worker = self.worker.worker_id
        for writer in self.writers:
            writer.prepare(self.commit_starts)  # new batch files: where they start, first
        # the items' bytes reach the feed files before "done" is written
        for writer in self.writers:
            if writer.has_output:
                writer.write_out(batch, self.config.fsync)
        if not batch:
            return
        # a sample of the stage's counts too (the report's charts): every few seconds,
        # and at every commit of a run's first half-minute (a run killed early shows)
        now = time.monotonic()
        early = now - self.started < PROGRESS_DETAILED_FOR
        batch.progress = final or early or now - self.last_sample >= PROGRESS_EVERY
        fenced = self.store.commit(batch)
        if fenced:  # leases lost between the fence and the commit
            self._called_off(batch, fenced)
            return
        if batch.progress:
            self.last_sample = time.monotonic()
        if self.worker is not None:
            self.worker.committed(batch.released_leases)
        self._committed(batch)
        self.stats.inc_value("checkpoint/commits")

    def _committed(self, batch: CommitBatch) -> None:
        self.settled_this_run += len(batch.settlements)
        self.last_commit = time.monotonic()
        for writer in self.writers:
            writer.committed(batch)
        self.feed_offsets.update(batch.feed_offsets)
        for name, delta in batch.counters.items():
            self.counter_totals[name] = self.counter_totals.get(name, 0) + delta


