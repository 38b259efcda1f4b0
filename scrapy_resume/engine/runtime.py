"""The per-crawler checkpoint state that every component shares: a façade.

Here: admission (every scheduled request gets its ledger key, or is skipped
as done in an earlier run, or is a copy of one already claimed) and the
per-response completions. Restoring the frontier is in ``restore``, committing
in ``committing``; the batch a commit writes is built by ``batching``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.exceptions import IgnoreRequest

from scrapy_resume.config import CheckpointConfig
from scrapy_resume.engine.batching import BatchBuilder
from scrapy_resume.engine.committing import Committer
from scrapy_resume.engine.completion import Completion, Outcome, StartItems, soon_caller
from scrapy_resume.engine.cookiejars import STATE as COOKIES
from scrapy_resume.engine.duplicates import EarlyDuplicates
from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.engine.itemids import ItemIds, start_item_id
from scrapy_resume.engine.keyset import KeySet
from scrapy_resume.engine.origin import Origin
from scrapy_resume.engine.requestmeta import (
    CLAIM_META,
    KEY_META,
    LEASE_META,
    ORIGIN_META,
    SKIP_META,
    WAKE_META,
)
from scrapy_resume.engine.restore import restored_requests
from scrapy_resume.engine.startgate import StartGate
from scrapy_resume.engine.uploads import STATE as UPLOADS
from scrapy_resume.store.base import BaseCheckpointStore
from scrapy_resume.store.records import KeyIndex, RequestStatus

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.spill import Spill
    from scrapy_resume.store.redis.leases import StageWorker


logger = logging.getLogger(__name__)

#: The error of a request still pending when a crawl finished: see
#: :meth:`CheckpointRuntime.settle_refused_requests`.
REFUSED_IN_SCHEDULING = "refused when scheduled (offsite, or a request_scheduled handler)"

#: Commit at once when this many requests are waiting, whatever the interval,
#: to bound memory and the size of one transaction.
MAX_BATCH = 5000


def attempts_of(request: Request) -> int:
    """Downloads of this request in this run: RetryMiddleware counts its retries in meta."""
    return request.meta.get("retry_times", 0) + 1


class CheckpointRuntime:
    def __init__(self, crawler: Crawler, config: CheckpointConfig):
        self.crawler = crawler
        self.config = config
        self.stats = crawler.stats
        self.fingerprint = crawler.request_fingerprinter.fingerprint
        self.store: BaseCheckpointStore | None = None
        # this process's leases, when several workers share a scrapy-redis queue
        self.worker: StageWorker | None = None
        self.recovering = False  # replaying the frontier of a crashed run
        # Keys settled before this run (never fetched again), and the frontier
        # found at start: compact indexes, not sets, as a stage may hold millions.
        self.finished: KeyIndex | frozenset[bytes] = frozenset()
        self.frontier: KeyIndex | frozenset[bytes] = frozenset()
        # frontier keys scheduled in this run, by a restored or a re-discovered
        # copy, whichever came first; finished keys already counted as skipped
        self.claimed = KeySet()
        self.skipped = KeySet()
        self.completions: dict[int, Completion] = {}
        self.stored_frontier: Iterator[list[tuple[bytes, bytes]]] = iter(())
        self.cursor_values: dict[str, Any] = {}  # the latest values, committed or not
        self.feed_files = FeedFiles(config.directory)  # a feed's key in the checkpoint
        self.start_items = StartItems()
        self.item_ids = ItemIds()  # the items in the pipelines: their stable ids
        self.batches = BatchBuilder(crawler, settled_before=self._settled_before)
        self.committer = Committer(crawler, config, self.batches, self.start_items)
        self.cookies = self.batches.cookies  # the cookie jars' changes (components/cookies.py)
        # CHECKPOINT_RESTORE_AFTER_START: the restored frontier waits for start()'s requests
        self.start_gate = StartGate(crawler) if config.restore_after_start else None
        self.spill: Spill | None = None  # the scheduler's requests past the memory budget
        self._last_scheduled: tuple[Request, Completion | None] | None = None
        # drops links to pages fetched already before they are scheduled (None: off)
        self.early_duplicates: EarlyDuplicates | None = None
        # the add-on's dupefilter's fingerprints, set when the scheduler makes it
        self.fingerprints_seen: KeySet | None = None

    # starting and restoring

    def start(self, store: BaseCheckpointStore, worker: StageWorker | None = None) -> None:
        # the committer is given both too (below); kept here as plain attributes,
        # read for every scheduled request
        self.store = store
        self.worker = worker
        # on a shared queue, the queue holds the pending requests (and restores them)
        self.batches.keep_blobs = worker is None
        # (on a shared queue too: it learns what scrapy-redis's dupefilter has seen)
        self.early_duplicates = EarlyDuplicates.for_crawler(self.crawler, self.fingerprints_seen)
        retry_failed = self.config.retry_failed  # failed requests go back into the frontier
        # an empty index (a fresh stage) is a frozenset: the cheapest "not in"
        self.finished = store.finished_index(include_failed=not retry_failed) or frozenset()
        self.frontier = store.frontier_index(include_failed=retry_failed) or frozenset()
        self.call_soon = soon_caller()
        # the frontier of earlier runs, as it is now: restored lazily, later
        self.stored_frontier = store.iter_pending(include_failed=retry_failed)
        self.cursor_values = store.cursors()
        state = store.state()
        self.start_items.load(state.get("start_items", {}))
        self.batches.stored_callbacks = set(state.get("callbacks", []))
        self.cookies.load(state.get(COOKIES, {}))
        self.committer.start(store, worker)  # active from now on
        self.committer.uploads.load(state.get(UPLOADS, {}), self.committer.record_state,
                                    lambda key: self.feed_files.path(key))

    def restored_requests(self) -> AsyncIterator[Request]:
        """The frontier of earlier runs, streamed back (see restore.py)."""
        return restored_requests(self)

    # scheduling

    def on_request_scheduled(self, request: Request, **signal_args: Any) -> None:
        # Runs for every request a callback yields, duplicates included: keep it lean
        # (**signal_args too: the dispatcher then passes spider, signal... unfiltered).
        self._last_scheduled = None
        if not self.active:
            return
        meta = request.meta
        origin = meta.pop(ORIGIN_META, None)
        if origin is None:
            if KEY_META in meta:  # a retry or redirect of a request we already track
                lease = meta.pop(LEASE_META, None)
                if self.worker is not None and lease is not None:
                    self.worker.rescheduled(lease)  # its copy went back in the shared queue
                return
            if WAKE_META in meta:
                raise IgnoreRequest("only wakes the engine up")  # see wake_engine()
            parent, ordinal = None, 0  # injected with engine.crawl() from outside a callback
        else:
            parent, ordinal = origin
        completion = parent if type(parent) is Completion else None
        if completion is not None:
            completion.output_settled()
        if meta.get(SKIP_META):
            meta.pop(KEY_META, None)  # may be inherited from response.meta
            return
        if parent is Origin.RESTORED:
            if not self.claimed.add(meta[KEY_META]):
                raise IgnoreRequest("already scheduled in this run")
            return
        key = self.fingerprint(request)
        if request.dont_filter:
            key = self._dont_filter_key(key, parent, ordinal)
        meta[KEY_META] = key
        if self.worker is not None and parent is Origin.START:  # (worker first: the hot path)
            # every worker's start() yields the start requests: the first one schedules
            # them. It claims one as the shared queue pushes it, in one step (a worker
            # killed between a claim and its push left it claimed and in no queue)
            meta[CLAIM_META] = True
            return
        # (skipped keys are finished ones, and claimed keys come from the frontier:
        # a fresh stage, with both empty, pays for neither set)
        if key in self.finished:
            if self.skipped.add(key):  # count each one once
                self.batches.count("skipped")
            raise IgnoreRequest("already done in an earlier run")
        # (claimed first: the frontier index no longer has a key settled in this run)
        if self.claimed.size and key in self.claimed:
            raise IgnoreRequest("already scheduled in this run")
        if key in self.frontier:
            self.claimed.add(key)  # this copy stands in for the stored one
            return
        self.batches.new_request(request, completion)
        self._last_scheduled = (request, completion)
        if completion is None and len(self.batches.loose) >= MAX_BATCH:
            # a huge start(): Scrapy reads it without a pause, so the commit timer
            # would wait for its end, with every request held in the batch till then
            self.commit_or_stop()

    def on_request_dropped(self, request: Request, **signal_args: Any) -> None:
        # Sent right after request_scheduled for the same request, when the
        # dupefilter refuses it.
        last, self._last_scheduled = self._last_scheduled, None
        if not self.active:
            return
        if last is not None and last[0] is request:
            # a new request duplicating one already in the ledger: nothing to write
            self.batches.drop_new_request(request, last[1])
            if self.early_duplicates is not None:
                # its key is its fingerprint: the dupefilter drops no dont_filter request
                self.early_duplicates.dropped_by_dupefilter(request.meta[KEY_META])
            return
        if request.meta.pop(CLAIM_META, False):
            return  # a start request of a shared stage, refused before it was claimed
        key = request.meta.get(KEY_META)
        if key is not None:
            # a request the ledger knows (a redirect to a URL already seen, a
            # restored request fetched meanwhile by another one): it ends here
            self.settle_now(key, request, RequestStatus.DROPPED, "filtered as a duplicate")

    @staticmethod
    def _dont_filter_key(fingerprint: bytes, parent: Any, ordinal: int) -> bytes:
        """dont_filter asks for a fetch even if the fingerprint was seen: key such a
        request by where it came from, so the same parent regenerates the same key."""
        if type(parent) is Completion:
            base = parent.key + parent.namespace
        elif parent is Origin.START:
            base = b"start"
        else:
            return fingerprint
        return hashlib.sha1(base + ordinal.to_bytes(8, "big") + fingerprint).digest()

    def wake_engine(self) -> None:
        """Have the engine look at its scheduler now, not at its next 5-second
        heartbeat: a worker waiting on a shared queue resumes at once when work
        arrives. ``engine.crawl()`` is the public call that does it; the request
        it is given is dropped by our request_scheduled handler (IgnoreRequest,
        which Scrapy does not log) before it reaches the scheduler."""
        self.crawler.engine.crawl(Request("data:,", meta={WAKE_META: True}, dont_filter=True))

    def tag_start_request(self, request: Request, ordinal: int) -> None:
        request.meta[ORIGIN_META] = (Origin.START, ordinal)

    # completions

    def open_completion(self, source: Any, request: Request, **kwargs: Any) -> Completion | None:
        key = request.meta.get(KEY_META)
        if key is None or not self.active:
            return None
        if self.early_duplicates is not None:
            self.early_duplicates.fetched_through_scheduler(request)
        completion = Completion(self, key, request, source, attempts=attempts_of(request), **kwargs)
        self.completions[id(source)] = completion
        return completion

    def completion_of(self, source: Any) -> Completion | None:
        return self.completions.get(id(source))

    def on_item_scraped(self, item: Any, response: Any) -> None:
        """Right after the feed exporter wrote the item: claim its bytes for its request."""
        claimed = [(buffer, buffer.take()) for buffer in self.committer.feeds if buffer.staged]
        completion = self.completions.get(id(response)) if response is not None else None
        if completion is None:  # from start(), or from a response we do not track
            # (an untracked response's items are in no commit's item ids: nothing
            # marks their request done)
            ordinal = self.start_items.settled(item) if response is None else None
            self.batches.loose_output(
                claimed, item_id=start_item_id(ordinal) if ordinal is not None else None
            )
            return
        completion.feed_bytes.extend(claimed)
        completion.items += 1
        position = self.item_ids.settled(item, completion)
        if position is not None:
            completion.scraped_positions.append(position)
        completion.output_settled()

    def on_item_not_scraped(self, item: Any, response: Any) -> None:
        """item_dropped or item_error: the item is settled, and nothing was exported."""
        if response is None:
            self.start_items.settled(item)
            return
        completion = self.completions.get(id(response))
        if completion is not None:
            self.item_ids.settled(item, completion)
            completion.output_settled()

    def item_id(self, item: Any) -> str:
        """The stable id of an item in the pipelines (see itemids.py)."""
        return self.item_ids.id_of(item, self.start_items.ordinal_of(item))

    def item_url(self, item: Any) -> str:
        return self.item_ids.url_of(item)

    def check_later(self, completion: Completion) -> None:
        # Deferred by one loop turn: handlers later in the same signal gather,
        # and a recovery chain started right after this one, run first.
        if not completion.check_scheduled and not completion.settled:
            completion.check_scheduled = True
            self.call_soon(self._check, completion)

    def _check(self, completion: Completion) -> None:
        completion.check_scheduled = False
        if completion.complete and not completion.settled:
            completion.settled = True
            self.completions.pop(id(completion.source), None)
            completion.source = None
            self.batches.completed(completion)
            if self.batches.waiting >= MAX_BATCH:
                self.commit_or_stop()

    def _settled_before(self, key: bytes) -> bool:
        """Is ``key`` settled in the store (before this run, or committed in it)?"""
        return self.store is not None and self.store.is_finished(key)

    def settle_without_output(self, request: Request, status: RequestStatus, error: str) -> None:
        """A request that ends with no callback output: a download error, no errback."""
        key = request.meta.get(KEY_META)
        if key is not None and self.active:
            self.settle_now(key, request, status, error)

    def settle_refused_requests(self) -> None:
        """At the end of a finished crawl, settle as dropped what is still pending.

        The scheduler is empty and nothing is in flight (on a shared queue: the
        last worker leaves, the queue is empty and no lease is outstanding), so
        every pending request was handed to an engine (by start(), a callback or
        a restore) and never fetched: a request_scheduled handler after ours
        refused it with IgnoreRequest, as Scrapy's OffsiteMiddleware does with
        offsite links. Left pending, every resume would restore it, see it
        refused again, and the stage would never complete.
        """
        assert self.store is not None
        self.batches.release_waiting_parents()
        refused = 0
        if self.store.summary().pending:  # (the common case: no scan of the ledger)
            for key in self.store.pending_keys():
                self.settle_now(key, None, RequestStatus.DROPPED, REFUSED_IN_SCHEDULING)
                refused += 1
        if refused:
            logger.info(
                "%d request(s) refused when scheduled (offsite, or another request_scheduled "
                "handler) were never fetched: marked dropped",
                refused, extra={"spider": self.crawler.spider},
            )

    def settle_now(
        self, key: bytes, request: Request | None, status: RequestStatus, error: str
    ) -> None:
        """Settle a request that has no output to wait for, in the next commit."""
        attempts = attempts_of(request) if request is not None else 0
        self.batches.completed(Outcome(key, request, status, error, attempts))

    # cursors and counters

    def set_cursor(self, name: str, value: Any, response: Any = None) -> None:
        self.cursor_values[name] = value
        completion = self.completions.get(id(response)) if response is not None else None
        if completion is not None:
            completion.cursors[name] = value
        else:
            self.batches.loose_cursor(name, value)

    # commits (see committing.py; the feed storage writes through ``committer``)

    @property
    def active(self) -> bool:
        """True between a successful open and the close: this crawl writes
        through the checkpoint."""
        return self.committer.active

    @active.setter
    def active(self, value: bool) -> None:
        self.committer.active = value

    def close_feeds(self) -> None:
        self.committer.close_feeds()

    def abandon_feeds(self) -> None:
        self.committer.abandon_feeds()

    def commit(self) -> None:
        self.committer.commit()

    def commit_or_stop(self) -> None:
        self.committer.commit_or_stop()

    async def commit_async(self) -> None:
        await self.committer.commit_async()

    def stop_after_failed_commit(self, error: Exception) -> None:
        self.committer.stop_after_failed_commit(error)

    def settle_completions(self) -> None:
        """Before the last commit: settle what is complete but not yet checked."""
        for completion in list(self.completions.values()):
            if completion.complete:
                self._check(completion)
