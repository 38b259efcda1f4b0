"""Per-response output accounting: when is a request completely processed?

Scrapy has no signal for "this response is fully processed": the callback's
output is handed to up to CONCURRENT_ITEMS workers, so when the output
generator ends, outputs may still be in flight. A :class:`Completion`
counts, for one response (or one errback call):

* the output chains that are still open (a ``process_spider_exception``
  recovery output is a second chain);
* the outputs yielded but not yet settled: a request settles when it is
  scheduled (``request_scheduled``), an item when it leaves the pipelines
  (``item_scraped`` / ``item_dropped`` / ``item_error``).

When both counts are zero, the request is complete, and everything it caused
(children, cursors, items) is committed together with its new status.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from scrapy import Request
from scrapy.utils.misc import arg_to_iter

from scrapy_resume.engine.requestmeta import ORIGIN_META
from scrapy_resume.store.records import RequestStatus

if TYPE_CHECKING:
    from scrapy_resume.engine.duplicates import EarlyDuplicates
    from scrapy_resume.engine.itemids import ItemIds



def soon_caller() -> Callable[..., Any]:
    """``call_soon(func, *args)`` on the running reactor, looked up once: Scrapy's
    ``call_later`` checks which reactor runs on every call, and we call it
    once per response."""
    try:
        from scrapy.utils.asyncio import is_asyncio_available
    except ImportError:  # Scrapy 2.13
        from scrapy.utils.reactor import is_asyncio_reactor_installed as is_asyncio_available
    if is_asyncio_available():
        import asyncio

        return asyncio.get_event_loop().call_soon
    from twisted.internet import reactor

    return lambda func, *args: reactor.callLater(0, func, *args)

class Watcher(Protocol):
    """What a completion reports to: the runtime, which settles the finished ones."""

    early_duplicates: EarlyDuplicates | None
    item_ids: ItemIds

    def check_later(self, completion: Completion) -> None: ...


class Completion:
    """Counts what one response's output still has in flight."""

    __slots__ = (
        "attempts",
        "blocked_on",
        "check_scheduled",
        "children",
        "cursors",
        "error",
        "feed_bytes",
        "http_status",
        "in_flight",
        "item_ordinal",
        "items",
        "items_in_flight",
        "key",
        "namespace",
        "open_chains",
        "ordinal",
        "request",
        "runtime",
        "scraped_positions",
        "settled",
        "source",
        "status",
    )

    def __init__(
        self,
        runtime: Watcher,
        key: bytes,
        request: Request,
        source: Any,
        *,
        namespace: bytes = b"c",
        status: RequestStatus = RequestStatus.DONE,
        http_status: int | None = None,
        error: str | None = None,
        attempts: int = 1,
    ):
        self.runtime = runtime
        self.key = key
        self.request = request
        self.source = source  # the Response or Failure; kept alive so its id() stays unique
        self.namespace = namespace  # keeps callback and errback ordinals apart
        self.status = status
        self.http_status = http_status
        self.error = error
        self.open_chains = 0
        self.in_flight = 0
        self.ordinal = 0
        self.children: list[Request] = []  # new requests, committed with this one
        self.cursors: dict[str, Any] = {}
        self.items = 0
        # item ids (see itemids.py): the next item's position, the positions of the
        # items in the pipelines (by id(item)), and of those that left them scraped
        self.item_ordinal = 0
        self.items_in_flight: dict[int, int] = {}
        self.scraped_positions: list[int] = []
        self.feed_bytes: list[tuple[Any, bytes]] = []  # (FeedBuffer, exported bytes) of its items
        self.check_scheduled = False
        self.settled = False
        self.blocked_on = 0  # unserializable children that must finish first
        self.attempts = attempts

    # counting outputs

    def tag(self, output: Any) -> Any:
        if isinstance(output, Request):
            output.meta[ORIGIN_META] = (self, self.ordinal)
            self.ordinal += 1
            self.in_flight += 1
        elif output is not None:
            self.runtime.item_ids.yielded(output, self, self.item_ordinal)
            self.item_ordinal += 1
            self.in_flight += 1
        return output

    def output_settled(self) -> None:
        self.in_flight -= 1
        # while a chain is open, its end will check: no need to schedule one per output
        if self.in_flight == 0 and self.open_chains == 0:
            self.runtime.check_later(self)

    def failed_with(self, error: str) -> None:
        """The callback or errback raised: the request ends ``failed``."""
        self.status = RequestStatus.FAILED
        self.error = error
        self.runtime.check_later(self)

    @property
    def complete(self) -> bool:
        return self.open_chains == 0 and self.in_flight == 0

    # wrapping output chains: each one counts as open from its first step to its end

    def iterate(self, output: Iterable[Any]) -> Iterator[Any]:
        duplicates = self.runtime.early_duplicates
        self.open_chains += 1
        try:
            for item in output:
                if duplicates is None or not duplicates.drops(item):
                    yield self.tag(item)
        finally:
            self.close_chain()

    async def aiterate(self, output: AsyncIterable[Any]) -> AsyncIterator[Any]:
        duplicates = self.runtime.early_duplicates
        self.open_chains += 1
        try:
            async for item in output:
                if duplicates is None or not duplicates.drops(item):
                    yield self.tag(item)
        finally:
            self.close_chain()

    def close_chain(self) -> None:
        self.open_chains -= 1
        # with outputs still in flight, the last one to settle will check
        if self.in_flight == 0:
            self.runtime.check_later(self)

    def wrap(self, output: Any) -> Any:
        """Wrap whatever an errback returned, the way Scrapy will consume it."""
        if output is None:
            self.runtime.check_later(self)
            return None
        if isinstance(output, AsyncIterable):
            return self.aiterate(output)
        if inspect.isawaitable(output):
            return self._await_then_wrap(output)
        return self.iterate(arg_to_iter(output))  # a single item counts as one, as in Scrapy

    async def _await_then_wrap(self, awaitable: Any) -> Any:
        self.open_chains += 1
        try:
            return self.wrap(await awaitable)
        finally:
            self.close_chain()


class Outcome:
    """A request settled with no output to wait for: a download error without
    errback, a duplicate, a request that could not be restored, one refused
    when scheduled. The batch builder takes it as it takes a finished Completion."""

    __slots__ = ("attempts", "blocked_on", "children", "cursors", "error", "feed_bytes",
                 "http_status", "items", "key", "request", "scraped_positions", "status")

    def __init__(
        self, key: bytes, request: Request | None, status: RequestStatus, error: str,
        attempts: int,
    ):
        self.key = key
        self.request = request
        self.status = status
        self.error = error
        self.attempts = attempts
        self.http_status: int | None = None
        self.items = 0
        self.scraped_positions: list[int] = []
        self.blocked_on = 0  # it yielded nothing, so it waits for no child
        self.children: list[Request] = []
        self.cursors: dict[str, Any] = {}
        self.feed_bytes: list[tuple[Any, bytes]] = []


class StartItems:
    """Items yielded by start(), counted by position, so a resumed start() skips
    the ones an earlier run committed (start() must yield them in the same order)."""

    def __init__(self) -> None:
        self.below = 0  # every ordinal below this one is committed
        self.extra: set[int] = set()  # committed ordinals above it
        self.in_flight: dict[int, tuple[int, Any]] = {}  # id(item) -> (ordinal, item)
        self.news: list[int] = []  # settled since the last commit

    def load(self, state: dict[str, Any]) -> None:
        self.below = state.get("below", 0)
        self.extra = set(state.get("extra", []))

    def should_yield(self, item: Any, ordinal: int) -> bool:
        if ordinal < self.below or ordinal in self.extra:
            return False
        self.in_flight[id(item)] = (ordinal, item)
        return True

    def ordinal_of(self, item: Any) -> int | None:
        """The position of ``item``, in flight, in start()'s output (its id: itemids.py)."""
        entry = self.in_flight.get(id(item))
        return entry[0] if entry is not None and entry[1] is item else None

    def settled(self, item: Any) -> int | None:
        """``item`` left the pipelines: its ordinal, if it was one of start()'s."""
        entry = self.in_flight.pop(id(item), None)
        if entry is None and self.in_flight:
            # a pipeline returned another object: settle the oldest item in flight
            oldest = min(self.in_flight, key=lambda k: self.in_flight[k][0])
            entry = self.in_flight.pop(oldest)
        if entry is None:
            return None
        self.news.append(entry[0])
        return entry[0]

    @property
    def has_news(self) -> bool:
        return bool(self.news)

    def commit(self) -> dict[str, Any]:
        """Fold the news in, and return the state to store."""
        self.extra.update(self.news)
        self.news = []
        while self.below in self.extra:
            self.extra.remove(self.below)
            self.below += 1
        return {"below": self.below, "extra": sorted(self.extra)}
