"""CHECKPOINT_RESTORE_AFTER_START: the restored frontier waits for start().

A crawl that logs in from start() must not send the requests of earlier runs
before the login completed: they would get the login form. With this mode,
our spider middleware runs start() first, holding each request it yields
(a meta token, copied by Scrapy to retries and redirects), and releases the
stored frontier once every held request is finished:

* its response went through the callback (the output chain ended, or raised);
* its download failed for good, or the dupefilter dropped it;
* it was refused when scheduled (done in an earlier run): our spider
  middleware releases it when start() is resumed after it.

A request refused silently by another ``request_scheduled`` handler (an
offsite start URL) never comes back: when the crawl has nothing left in
flight, the gate opens anyway and says why.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

#: The meta key holding a start request's token while the gate waits for it.
GATE_META = "checkpoint_start_gate"


class StartGate:
    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.held: set[int] = set()
        self.in_callbacks: set[int] = set()  # held requests whose response is being processed
        self.tokens = 0
        self.start_done = False
        self.opened: Deferred[None] = Deferred()
        crawler.signals.connect(self.responded, signal=signals.response_received)
        crawler.signals.connect(self.dropped, signal=signals.request_dropped)
        crawler.signals.connect(self.nothing_scheduled, signal=signals.scheduler_empty)

    @property
    def open(self) -> bool:
        return self.opened.called

    def hold(self, request: Request) -> None:
        """``request`` comes from start(): the frontier waits for it."""
        self.tokens += 1
        request.meta[GATE_META] = self.tokens
        self.held.add(self.tokens)

    def release(self, meta: dict[str, Any]) -> None:
        token = meta.pop(GATE_META, None)
        if token is None or token not in self.held:
            return
        self.held.discard(token)
        self.in_callbacks.discard(token)
        self._open_if_done()

    async def wait(self) -> None:
        """After start() is exhausted: until every request it yielded is finished."""
        self.start_done = True
        self._open_if_done()
        await maybe_deferred_to_future(self.opened)

    def _open_if_done(self) -> None:
        if self.start_done and not self.held and not self.opened.called:
            self.opened.callback(None)

    # what the signals tell

    def responded(self, response: Any, request: Any, **signal_args: Any) -> None:
        token = (response.request or request).meta.get(GATE_META)
        if token in self.held:
            self.in_callbacks.add(token)

    def dropped(self, request: Request, **signal_args: Any) -> None:
        self.release(request.meta)

    def nothing_scheduled(self, **signal_args: Any) -> None:
        """The scheduler is empty: if nothing is downloading and no held response
        is in a callback, the requests still held were refused silently."""
        if not self.start_done or self.open or self.in_callbacks:
            return
        if self.crawler.engine is None or self.crawler.engine.downloader.active:
            return
        logger.warning(
            "CHECKPOINT_RESTORE_AFTER_START: %d of start()'s requests were never downloaded "
            "(refused when scheduled: an offsite URL, or a request_scheduled handler); the "
            "restored requests are released now", len(self.held),
            extra={"spider": self.crawler.spider},
        )
        self.held.clear()
        self._open_if_done()

    # wrapping a held response's output

    def holds(self, response: Any) -> bool:
        request = getattr(response, "request", None)
        return request is not None and request.meta.get(GATE_META) in self.held

    def released_after(self, response: Any, output: Iterable[Any]) -> Iterator[Any]:
        try:
            yield from output
        finally:
            self.release(response.request.meta)

    async def released_after_async(
        self, response: Any, output: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in output:
                yield item
        finally:
            self.release(response.request.meta)
