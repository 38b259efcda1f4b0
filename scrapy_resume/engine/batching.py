"""Turning completed requests into write-ahead commit batches.

A completed request is committed with all of its consequences: the requests
its callback yielded (serialized, as pending), its cursor updates, its
counters and its items' feed bytes. A child that cannot be serialized exists
only in memory, so its parent waits, not done, until that child has itself
been committed: a crash in between re-runs the parent, which yields the child
again. A child that finishes before the commit is written once, settled, and
never serialized (about half of them, on a local crawl).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scrapy_resume.engine.cookiejars import STATE as COOKIES
from scrapy_resume.engine.cookiejars import SessionCookies
from scrapy_resume.engine.itemids import response_item_id
from scrapy_resume.engine.requestmeta import KEY_META, LEASE_META
from scrapy_resume.store.records import CommitBatch, NewRequest, RequestStatus, Settlement

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.completion import Completion, Outcome, StartItems

    # what a commit settles: a finished Completion, or a request with no output
    Finished = Completion | Outcome
    from scrapy_resume.engine.feedbuffer import FeedBuffer

logger = logging.getLogger(__name__)


class BatchBuilder:
    def __init__(self, crawler: Crawler, settled_before: Callable[[bytes], bool]):
        self.crawler = crawler
        self.settled_before = settled_before  # is this key settled in an earlier commit?
        # New requests (their ledger key in meta) with no parent response: from
        # start(), or from outside any callback. Children wait in their parent.
        self.loose: list[Request] = []
        self.ready: list[Finished] = []  # completed, waiting for the next commit
        self.waiting_parents: dict[bytes, Completion] = {}  # child key -> parent
        # while a batch is being built: the keys it settles, and of those, the
        # ones done or dropped (a failed one stays in the frontier)
        self.settled_in_batch: set[bytes] = set()
        self.finished_in_batch: set[bytes] = set()
        self.loose_cursors: dict[str, Any] = {}
        self.loose_feed_bytes: list[tuple[FeedBuffer, bytes]] = []
        self.loose_item_ids: list[str] = []
        # the ids of the items the last batch built commits (for checkpoint_before_commit)
        self.item_ids: list[str] = []
        self.counter_deltas: dict[str, int] = {}
        self.cookies = SessionCookies()  # the jars' changes, committed with their requests
        self.warned_callbacks: set[str] = set()
        self.callbacks = CallbackNames()
        # the callback and errback names stored requests use, committed when one
        # is new: a resume checks that the spider still has them
        self.stored_callbacks: set[str] = set()
        self.new_callbacks = False
        # False on a shared scrapy-redis queue: the queue holds the serialized
        # requests, the ledger only their keys and URLs
        self.keep_blobs = True
        self.built_loose_bytes: list[tuple[FeedBuffer, bytes]] = []

    # what happened since the last commit

    def new_request(self, request: Request, parent: Completion | None) -> None:
        if parent is not None:
            parent.children.append(request)  # committed with the parent's completion
        else:
            self.loose.append(request)

    def drop_new_request(self, request: Request, parent: Completion | None) -> None:
        """The dupefilter refused the request just passed to :meth:`new_request`."""
        # Most links of a broad crawl end here: forget them at once, at O(1).
        siblings = parent.children if parent is not None else self.loose
        if siblings and siblings[-1] is request:
            siblings.pop()

    def completed(self, completion: Finished) -> None:
        self.ready.append(completion)

    @property
    def waiting(self) -> int:
        return len(self.ready)

    def loose_cursor(self, name: str, value: Any) -> None:
        self.loose_cursors[name] = value

    def loose_output(self, claimed: list[tuple[FeedBuffer, bytes]], items: int = 1,
                     item_id: str | None = None) -> None:
        """Items from start(), or from a response that is not tracked."""
        self.loose_feed_bytes.extend(claimed)
        self.count("items", items)
        if item_id is not None:
            self.loose_item_ids.append(item_id)

    def count(self, name: str, delta: int = 1) -> None:
        if delta:
            self.counter_deltas[name] = self.counter_deltas.get(name, 0) + delta

    # building a batch

    def leases_ready(self) -> list[str]:
        """The shared-queue leases of the requests ready to settle (to fence first)."""
        return [lease for completion in self.ready if completion.request is not None
                and (lease := completion.request.meta.get(LEASE_META)) is not None]

    def build(self, start_items: StartItems, lost: frozenset[str] = frozenset()) -> CommitBatch:
        """``lost``: leases this worker no longer holds; their requests are another
        worker's now, so nothing of theirs is written here (not their settlement,
        items, counts or cursors)."""
        batch = CommitBatch()
        self.item_ids, self.loose_item_ids = self.loose_item_ids, []
        while self.ready:  # a settlement can unblock a parent: it joins this batch
            ready, self.ready = self.ready, []
            # Newest first: a child completes after its parent, so when the
            # parent's children are added, those settled in this batch are
            # known, and they need no serialized copy (their settlement is
            # written instead). Written in completion order all the same.
            new_requests: list[list[NewRequest]] = []
            settling: list[Finished] = []
            for completion in reversed(ready):
                new_requests.append(self._children_of(completion))
                if not completion.blocked_on:
                    settling.append(completion)
                    self._settlement_committed(completion)
            for children in reversed(new_requests):
                batch.new_requests.extend(children)
            for completion in reversed(settling):
                if lost and lease_of(completion) in lost:
                    continue
                self._add_settlement(batch, completion)
        # (after the settlements, so that a start request fetched already needs no
        # copy either, but first in discovery order)
        loose, self.loose = self.loose, []
        batch.new_requests[:0] = [
            new for new in (self._pending_form(request) for request in loose) if new is not None
        ]
        self.settled_in_batch.clear()
        self.finished_in_batch.clear()
        batch.cursors.update(self.loose_cursors)
        self.loose_cursors = {}
        loose_bytes, self.loose_feed_bytes = self.loose_feed_bytes, []
        self.built_loose_bytes = loose_bytes  # (back in the next batch if this one is called off)
        for feed, data in loose_bytes:
            feed.add_record(data)
        if start_items.has_news:
            batch.state["start_items"] = start_items.commit()
        cookies = self.cookies.state_to_commit(time.time())
        if cookies is not None:
            batch.state[COOKIES] = cookies
        if self.new_callbacks:
            batch.state["callbacks"] = sorted(self.stored_callbacks)
            self.new_callbacks = False
        for name, delta in self.counter_deltas.items():
            batch.counters[name] = batch.counters.get(name, 0) + delta
        self.counter_deltas = {}
        return batch

    def _children_of(self, completion: Finished) -> list[NewRequest]:
        """The new requests ``completion``'s response yielded, to write as pending.

        A child that cannot be serialized and has not finished blocks it."""
        children, completion.children = completion.children, []
        new_requests = []
        for request in children:
            new = self._pending_form(request)
            if new is not None:
                new_requests.append(new)
                continue
            key = request.meta[KEY_META]
            if not (key in self.settled_in_batch or self.settled_before(key)):
                # The child exists only in memory: this request stays not-done
                # until the child has finished, so a crash re-runs it.
                completion.blocked_on += 1
                self.waiting_parents[key] = completion
        return new_requests

    def _add_settlement(self, batch: CommitBatch, completion: Finished) -> None:
        request = completion.request
        blob = None
        if request is not None:
            if completion.status == RequestStatus.FAILED:
                blob = self.serialize(first_requested(request), warn=False)  # to be retried
        lease = lease_of(completion)
        if lease is not None:  # taken from a shared queue: the lease ends with this commit
            batch.released_leases.append(lease)
        batch.settlements.append(
            Settlement(
                key=completion.key,
                status=completion.status,
                url=request.url if request is not None else "",
                http_status=completion.http_status,
                error=completion.error,
                blob=blob,
                attempts=completion.attempts,
                lease=lease,
            )
        )
        batch.cursors.update(completion.cursors)
        if self.cookies.pending:
            self.cookies.settled(completion.key)
        for feed, data in completion.feed_bytes:
            feed.add_record(data)
        counters = batch.counters
        status_name = completion.status.name.lower()
        counters[status_name] = counters.get(status_name, 0) + 1
        if completion.items:
            counters["items"] = counters.get("items", 0) + completion.items
        if completion.scraped_positions:
            key, namespace = completion.key, completion.namespace  # (only a Completion's)
            self.item_ids.extend(
                response_item_id(key, namespace, n) for n in completion.scraped_positions
            )

    def release_waiting_parents(self) -> None:
        """The crawl finished, and children that exist only in memory never
        settled: nothing fetched them (a request_scheduled handler refused them),
        so their parents are complete."""
        for key in list(self.waiting_parents):
            self._unblock_parent_of(key)

    def _settlement_committed(self, completion: Finished) -> None:
        """``completion`` is settled in this batch."""
        key = completion.key
        self.settled_in_batch.add(key)
        if completion.status != RequestStatus.FAILED:  # (a failed one keeps a copy, to be retried)
            self.finished_in_batch.add(key)
        self._unblock_parent_of(key)

    def _unblock_parent_of(self, key: bytes) -> None:
        """``key`` is settled: the parent waiting for it may be complete now."""
        parent = self.waiting_parents.pop(key, None)
        if parent is not None:
            parent.blocked_on -= 1
            if parent.blocked_on == 0:
                self.ready.append(parent)

    def _pending_form(self, request: Request) -> NewRequest | None:
        """A new request as the store takes it: serialized, unless it is settled
        in this batch (then only its URL is needed); None if it cannot be."""
        key = request.meta[KEY_META]
        if not self.keep_blobs or key in self.finished_in_batch:
            return NewRequest(key, request.url, None)
        blob = self.serialize(request, warn=True)
        if blob is None:
            return None
        return NewRequest(key, request.url, blob)

    def serialize(self, request: Request, *, warn: bool) -> bytes | None:
        spider = self.crawler.spider
        try:
            data = request.to_dict(spider=self.callbacks.holder(spider, request))
            blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            if warn:
                self.count("unserializable")
                self.crawler.stats.inc_value("checkpoint/unserializable")
                callback = getattr(request.callback, "__qualname__", repr(request.callback))
                if callback not in self.warned_callbacks:
                    self.warned_callbacks.add(callback)
                    logger.warning(
                        "Cannot checkpoint a request for callback %s (%s: %s); its parent "
                        "stays not-done until it finishes. Use spider methods as callbacks "
                        "and picklable meta/cb_kwargs to make such requests resumable.",
                        callback, type(exc).__name__, exc, extra={"spider": spider},
                    )
            return None
        for name in (data.get("callback"), data.get("errback")):
            if name is not None and name not in self.stored_callbacks:
                self.stored_callbacks.add(name)
                self.new_callbacks = True
        return blob


#: What RedirectMiddleware adds to the meta of the request it redirects to.
REDIRECT_META = ("redirect_urls", "redirect_reasons", "redirect_times", "redirect_ttl")


def first_requested(request: Request) -> Request:
    """A failed request, as it is retried: at the URL first requested, not where a
    redirect led (a login form, when the session was gone). The method is the
    last one: a POST redirected to a GET is retried as a GET."""
    urls = request.meta.get("redirect_urls")
    if not urls:
        return request
    meta = {name: value for name, value in request.meta.items() if name not in REDIRECT_META}
    return request.replace(url=urls[0], meta=meta)


class CallbackNames:
    """Makes ``Request.to_dict(spider=...)`` cheap.

    ``to_dict`` finds the name of a callback by listing every method of the
    object it is given (``inspect.getmembers``): about 20 us a request on a
    real spider. Given an object holding only the request's callback and
    errback, under the names the spider has them, it finds the same names at
    once. Anything unusual gets the spider itself, and to_dict's own search.
    """

    def __init__(self) -> None:
        self.holders: dict[tuple[Any, Any], Any] = {}

    def holder(self, spider: Any, request: Request) -> Any:
        callback, errback = request.callback, request.errback
        functions = (getattr(callback, "__func__", callback), getattr(errback, "__func__", errback))
        found = self.holders.get(functions)
        if found is None:
            found = self._holder(spider, request)
            if found is not spider:  # (not for lambdas: a new one each time)
                self.holders[functions] = found
        return found

    @staticmethod
    def _holder(spider: Any, request: Request) -> Any:
        methods = {}
        for method in (request.callback, request.errback):
            if method is None or not callable(method):
                continue
            name = getattr(method, "__name__", "")
            own = getattr(spider, name, None)
            if getattr(method, "__self__", None) is not spider or (
                getattr(own, "__func__", None) is not getattr(method, "__func__", None)
            ):
                return spider  # not simply a method of the spider under its own name
            methods[name] = own
        holder = type("SpiderCallbacks", (), {})()
        holder.__dict__.update(methods)
        return holder


def lease_of(completion: Finished) -> str | None:
    request = completion.request
    return None if request is None else request.meta.get(LEASE_META)
