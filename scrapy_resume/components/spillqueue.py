"""Scheduler memory queues that keep a bounded number of requests in memory.

The add-on puts them in the place of Scrapy's (``SCHEDULER_MEMORY_QUEUE``
and ``SCHEDULER_START_MEMORY_QUEUE``): ``SpillingLifoQueue`` for Scrapy's
LifoMemoryQueue (depth-first, the default), ``SpillingFifoQueue`` for its
FifoMemoryQueue (breadth-first settings, start requests). Scrapy's priority
queues, and DownloaderAwarePriorityQueue's per-slot fairness, sit above them
unchanged. Each queue pops in exactly the order Scrapy's would:

* LIFO: the newest requests stay in memory; when the crawl holds more than
  CHECKPOINT_FRONTIER_MEMORY, the oldest go to a LIFO file, which is popped
  (newest of it first) once the memory part is empty.
* FIFO: the oldest stay in memory; while the file holds requests, new ones
  go behind them, into the file, and the memory part is refilled from it.

A request that cannot be serialized stays in memory. Outside a checkpointed
crawl (a debugging command, a refused run) they are plain memory queues.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from queuelib.queue import FifoDiskQueue, LifoDiskQueue
from scrapy.utils.misc import load_object

from scrapy_resume.components.lookup import runtime_of

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from scrapy_resume.engine.spill import Spill

#: Scrapy's memory queues, and ours in their place.
IN_THEIR_PLACE = {
    "scrapy.squeues.LifoMemoryQueue": "scrapy_resume.components.spillqueue.SpillingLifoQueue",
    "scrapy.squeues.FifoMemoryQueue": "scrapy_resume.components.spillqueue.SpillingFifoQueue",
}


def memory_queues(settings: BaseSettings) -> dict[str, str]:
    """The scheduler queue settings the add-on sets: ours where Scrapy's are
    named (a queue of the project's own is left alone)."""
    found = {}
    for name in ("SCHEDULER_MEMORY_QUEUE", "SCHEDULER_START_MEMORY_QUEUE"):
        value = settings.get(name)
        for scrapys, ours in IN_THEIR_PLACE.items():
            if value == scrapys or value is load_object(scrapys):
                found[name] = ours
    return found


class SpillingQueue:
    disk_class: Any = LifoDiskQueue

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.memory: deque[Request] = deque()
        self.disk: Any = None  # a queuelib disk queue, once this queue spills
        self.spill: Spill | None = None
        self.looked_up = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, key: str = "") -> SpillingQueue:
        return cls(crawler)  # (key: a disk queue's path; ours are made per run, in spill.py)

    def _spill(self) -> Spill | None:
        if not self.looked_up:
            runtime = runtime_of(self.crawler)
            # (a request scheduled before the stage opened, from another spider_opened
            # handler, waits in memory; the lookup is tried again on the next push)
            self.looked_up = runtime is None or runtime.active
            if runtime is not None and runtime.active:
                self.spill = runtime.spill
        return self.spill

    def __len__(self) -> int:
        return len(self.memory) + (len(self.disk) if self.disk is not None else 0)

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
            self.disk = None

    # moving requests to and from the file

    def _to_disk(self, request: Request, spill: Spill) -> bool:
        data = spill.dumps(request)
        if data is None:
            return False
        if self.disk is None:
            self.disk = self.disk_class(spill.new_file())
        self.disk.push(data)
        spill.on_disk += 1
        spill.written += 1
        return True

    def _from_disk(self, spill: Spill) -> Request | None:
        data = self.disk.pop() if self.disk is not None else None
        if data is None:
            return None
        spill.on_disk -= 1
        return spill.loads(data)

    def _remember(self, request: Request, spill: Spill | None, left: bool = False) -> None:
        (self.memory.appendleft if left else self.memory.append)(request)
        if spill is not None:
            spill.in_memory += 1

    def _refill(self, left: bool) -> None:
        """The memory part is empty: take the next requests from the file, in order."""
        spill = self.spill
        if spill is None or self.disk is None:
            return
        for _ in range(spill.room):
            request = self._from_disk(spill)
            if request is None:
                break
            self._remember(request, spill, left)

    def _forget(self, spill: Spill | None, left: bool) -> Request:
        request = self.memory.popleft() if left else self.memory.pop()
        if spill is not None:
            spill.in_memory -= 1
        return request


class SpillingLifoQueue(SpillingQueue):
    """Scrapy's LifoMemoryQueue, with its oldest requests on disk past the budget."""

    def push(self, request: Request) -> None:
        spill = self._spill()
        self._remember(request, spill)
        if spill is not None and spill.over_budget:
            kept = []
            for _ in range(min(spill.excess, len(self.memory) - 1)):  # the oldest, oldest first
                oldest = self._forget(spill, left=True)
                if not self._to_disk(oldest, spill):
                    kept.append(oldest)
            for request in reversed(kept):  # (unserializable: stay in memory, at the bottom)
                self._remember(request, spill, left=True)

    def pop(self) -> Request | None:
        if not self.memory:
            self._refill(left=True)  # the file pops newest first: each goes below the last
        return self._forget(self.spill, left=False) if self.memory else None

    def peek(self) -> Request | None:
        if not self.memory:
            self._refill(left=True)
        return self.memory[-1] if self.memory else None


class SpillingFifoQueue(SpillingQueue):
    """Scrapy's FifoMemoryQueue, with its newest requests on disk past the budget."""

    disk_class = FifoDiskQueue

    def push(self, request: Request) -> None:
        spill = self._spill()
        waiting = self.disk is not None and len(self.disk)
        if spill is not None and (waiting or spill.in_memory >= spill.limit):
            if self._to_disk(request, spill):  # behind the ones already there
                return
        self._remember(request, spill)

    def pop(self) -> Request | None:
        if not self.memory:
            self._refill(left=False)
        return self._forget(self.spill, left=True) if self.memory else None

    def peek(self) -> Request | None:
        if not self.memory:
            self._refill(left=False)
        return self.memory[0] if self.memory else None
