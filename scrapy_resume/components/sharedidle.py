"""A worker of a shared stage (scrapy-redis) out of work: it stays open while
any worker holds a lease, since a dead worker's requests come back to the
queue when its leases expire, and it puts those back itself."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DontCloseSpider

try:
    from scrapy.utils.asyncio import create_looping_call
except ImportError:  # Scrapy 2.13
    from twisted.internet.task import LoopingCall as create_looping_call  # type: ignore

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.runtime import CheckpointRuntime
    from scrapy_resume.store.redis.leases import StageWorker

logger = logging.getLogger(__name__)

#: How often a worker with no work looks at the shared queue and the leases.
WAIT_POLL_SECONDS = 0.05


class SharedQueueIdle:
    def __init__(self, crawler: Crawler, runtime: CheckpointRuntime):
        self.crawler = crawler
        self.runtime = runtime
        self.waiting: Any = None  # polls the shared queue while this worker has no work

    def spider_idle(self, spider: Spider) -> None:
        """Out of work: stay open while any worker holds a lease; put the requests
        of expired leases (dead workers) back in the queue."""
        worker = self.runtime.worker
        if worker is None or not self.runtime.active:
            return
        self.runtime.settle_completions()
        self.runtime.commit_or_stop()
        if not self.runtime.active:
            return
        if self.runtime.committer.in_progress is not None:
            # a commit waits for its hook (checkpoint_before_commit): the leases it
            # settles are not leftovers; look again once it is written
            self._wait(worker)
            raise DontCloseSpider
        stats = self.crawler.stats
        stats.inc_value("checkpoint/leases_released_idle", worker.release_leftovers())
        reclaimed = worker.reclaim_expired()
        if reclaimed:
            stats.inc_value("checkpoint/leases_reclaimed", reclaimed)
            logger.info(
                "Put %d request(s) of expired leases (a worker died) back in the queue",
                reclaimed, extra={"spider": spider},
            )
        outstanding = worker.outstanding()
        if reclaimed or outstanding or worker.queued():
            logger.debug("Waiting: %d lease(s) outstanding", outstanding, extra={"spider": spider})
            self._wait(worker)
            raise DontCloseSpider

    def _wait(self, worker: StageWorker) -> None:
        if self.waiting is None or not self.waiting.running:
            self.waiting = create_looping_call(self._check_shared_queue, worker)
            self.waiting.start(WAIT_POLL_SECONDS, now=False)

    def _check_shared_queue(self, worker: StageWorker) -> None:
        """While waiting: as soon as there is work, the crawl is over, a lease has
        expired, or this worker's own leases can be looked at (no commit waiting for
        its hook), wake the engine (it would look only every 5 s)."""
        if not self.runtime.active:
            self.waiting.stop()  # type: ignore[union-attr]
            return
        committed = self.runtime.committer.in_progress is None
        if committed and (worker.queued() or not worker.outstanding() or worker.expired()
                          or worker.held):
            self.waiting.stop()  # type: ignore[union-attr]
            self.runtime.wake_engine()
