"""Where the scheduler's requests wait when there are too many to keep in memory.

A wide crawl enqueues far more requests than it fetches: 300,000 pending
requests took 890 MB in plain Scrapy's memory queues. The scheduler queues
of components/spillqueue.py keep at most CHECKPOINT_FRONTIER_MEMORY
requests of the crawl in memory, and write the others to files in a
private directory of this run, as Scrapy's own disk queues (queuelib) do.

Those files are never read by another run: the checkpoint's frontier is
what a resume restores, so a crash loses nothing that was not already
safe. Each run starts by deleting what a killed run left there.
"""

from __future__ import annotations

import itertools
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.utils.request import request_from_dict

#: The most requests taken back from disk at once.
CHUNK = 1000

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.batching import CallbackNames


class Spill:
    """The crawl's budget of requests in memory, and the directory of the rest."""

    def __init__(self, crawler: Crawler, directory: Path, limit: int, callbacks: CallbackNames):
        self.crawler = crawler
        self.directory = directory
        self.limit = limit  # requests kept in memory, all queues together
        self.in_memory = 0
        self.on_disk = 0
        self.written = 0  # requests that went to disk in this run (checkpoint/frontier_on_disk)
        self.callbacks = callbacks  # (to_dict made cheap: see batching.CallbackNames)
        self.names = itertools.count()
        shutil.rmtree(directory, ignore_errors=True)  # what a killed run left

    @property
    def over_budget(self) -> bool:
        return self.in_memory > self.limit

    @property
    def excess(self) -> int:
        """How many to move to disk when over budget: down to 3/4 of it, so that
        the next requests are not moved one by one."""
        return self.in_memory - self.limit * 3 // 4

    @property
    def room(self) -> int:
        """How many to take back from disk at once (at least one)."""
        return max(1, min(CHUNK, self.limit - self.in_memory))

    def new_file(self) -> str:
        """The path of a new queue file (queuelib creates it)."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        return str(self.directory / str(next(self.names)))

    def dumps(self, request: Request) -> bytes | None:
        """The request as bytes; None if it cannot be serialized (it stays in memory)."""
        spider = self.crawler.spider
        try:
            data = request.to_dict(spider=self.callbacks.holder(spider, request))
            return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return None

    def loads(self, data: bytes) -> Request:
        return request_from_dict(pickle.loads(data), spider=self.crawler.spider)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

