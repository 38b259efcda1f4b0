"""LeasedPriorityQueue: scrapy-redis's shared queue, where a pop is also a lease.

The leases themselves (store/redis/leases.py) belong to the store; this is the
Scrapy side. Only a scrapy-redis crawl imports this module (the add-on names it
in SCHEDULER_QUEUE_CLASS): importing scrapy-redis loads the whole Redis client,
a quarter of a second that a crawl on SQLite does not pay.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.requestmeta import LEASE_META

try:
    from scrapy_redis.queue import PriorityQueue
except ImportError:  # scrapy-redis is optional: only a shared queue needs it
    PriorityQueue = object  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from scrapy import Request

    from scrapy_resume.engine.runtime import CheckpointRuntime


class LeasedPriorityQueue(PriorityQueue):  # type: ignore[misc,valid-type]
    """scrapy-redis's priority queue, where a pop is also a lease.

    Set by the add-on as ``SCHEDULER_QUEUE_CLASS`` when SCHEDULER is
    scrapy-redis's. It relies on scrapy-redis's ``Base._decode_request`` (the
    queue classes' own decoding, meant for subclasses like this one);
    tests/integration/test_redis_workers.py fails loudly if that changes.
    """

    @cached_property
    def checkpoint_runtime(self) -> CheckpointRuntime | None:
        """The crawl's checkpoint state, looked up once rather than at every pop."""
        return runtime_of(self.spider.crawler)

    def pop(self, timeout: int = 0) -> Request | None:
        runtime = self.checkpoint_runtime
        worker = runtime.worker if runtime is not None and runtime.active else None
        if worker is None:  # checkpointing is off or refused for this crawl
            return super().pop(timeout)
        taken = worker.take(self.key)
        if taken is None:
            return None
        data, lease = taken
        request = self._decode_request(data)
        request.meta[LEASE_META] = lease
        return request
