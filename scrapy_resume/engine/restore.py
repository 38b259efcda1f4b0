"""Restoring the frontier of earlier runs, and checking it can be restored.

The stored requests come back through the spider's start() (our spider
middleware's process_start), oldest first, streamed in batches.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from scrapy import Request, signals
from scrapy.exceptions import CloseSpider
from scrapy.utils.request import request_from_dict

from scrapy_resume.engine.origin import Origin
from scrapy_resume.engine.requestmeta import KEY_META, ORIGIN_META
from scrapy_resume.store.base import CheckpointTampered
from scrapy_resume.store.records import RequestStatus, StageStatus

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.keyset import KeySet
    from scrapy_resume.store.base import BaseCheckpointStore
    from scrapy_resume.store.redis.leases import StageWorker

logger = logging.getLogger(__name__)


class RestoreHost(Protocol):
    """What a restore works with: the runtime."""

    crawler: Crawler
    store: BaseCheckpointStore | None
    stored_frontier: Iterator[list[tuple[bytes, bytes]]]
    claimed: KeySet
    recovering: bool
    worker: StageWorker | None

    @property
    def active(self) -> bool: ...

    def settle_now(
        self, key: bytes, request: Request | None, status: RequestStatus, error: str
    ) -> None: ...

    def stop_after_failed_commit(self, error: Exception) -> None: ...


def next_batch(batches: Any, spider: Any) -> list[tuple[bytes, bytes]] | None:
    """The next batch of the stored frontier; a forged request stops the crawl."""
    try:
        return next(batches, None)
    except CheckpointTampered as exc:
        logger.error(
            "%s. It was not signed by this checkpoint directory's secret, so it was not "
            "loaded: a checkpoint holds pickled requests, which are code. Never resume a "
            "checkpoint from an untrusted source. To start over: -s CHECKPOINT_RESET=1.",
            exc, extra={"spider": spider},
        )
        # raised from start() (our process_start), CloseSpider ends start() and the crawl
        raise CloseSpider("checkpoint_tampered") from None


def missing_callbacks(
    store: BaseCheckpointStore, spider: Any, *, include_failed: bool
) -> dict[str, int]:
    """Callbacks and errbacks of stored requests that the spider no longer has
    (a method renamed since), with how many requests need each one.

    The stage records the names its stored requests use; only when one of them
    is gone is the frontier read, to count the requests that really need it."""
    names = store.state().get("callbacks", [])
    gone = {name for name in names if not callable(getattr(spider, name, None))}
    needed: dict[str, int] = {}
    if not gone:
        return needed
    for batch in store.iter_pending(include_failed=include_failed):
        for _, blob in batch:
            data = pickle.loads(blob)
            for name in (data.get("callback"), data.get("errback")):
                if name in gone:
                    needed[name] = needed.get(name, 0) + 1
    return needed


async def restored_requests(host: RestoreHost) -> AsyncIterator[Request]:
    """The frontier of earlier runs, oldest first, streamed in batches.

    Scrapy pulls start() output as fast as it comes, so a frontier of
    100,000 requests would sit in the scheduler's memory at once. Like
    Scrapy's documented lazy start(), wait while no request can be sent.
    """
    assert host.store is not None
    crawler = host.crawler
    spider = crawler.spider
    while (batch := next_batch(host.stored_frontier, spider)) is not None:
        for key, blob in batch:
            await room_to_send(crawler)
            if key in host.claimed:
                continue  # a re-discovered copy is already scheduled
            request = unpickled(host, key, blob)
            if request is not None:
                crawler.stats.inc_value("checkpoint/restored")
                yield request
    if host.recovering and host.active:
        host.recovering = False
        try:
            host.store.set_status(StageStatus.RUNNING)
        except Exception as exc:
            host.stop_after_failed_commit(exc)


def unpickled(host: RestoreHost, key: bytes, blob: bytes) -> Request | None:
    """A stored request, ready to be scheduled again; None (and settled as
    failed) if it cannot be rebuilt."""
    spider = host.crawler.spider
    try:
        request = request_from_dict(pickle.loads(blob), spider=spider)
    except Exception as exc:
        logger.error(
            "Cannot restore a pending request (%s); marking it failed",
            exc, exc_info=True, extra={"spider": spider},
        )
        host.settle_now(key, None, RequestStatus.FAILED, f"restore: {exc!r}")
        return None
    request.meta[KEY_META] = key
    request.meta[ORIGIN_META] = (Origin.RESTORED, 0)
    if host.worker is not None:
        # a failed request retried: the shared dupefilter has seen it
        request.dont_filter = True
    # a failed request being retried gets its retries afresh
    request.meta.pop("retry_times", None)
    return request


async def room_to_send(crawler: Crawler) -> None:
    """The "Delaying start request iteration" recipe of Scrapy's documentation."""
    wait_for = getattr(crawler.signals, "wait_for", None)  # Scrapy 2.13 has none
    if wait_for is not None and crawler.engine.needs_backout():
        await wait_for(signals.scheduler_empty)
