"""LeasedPriorityQueue: scrapy-redis's shared queue, where a pop is also a lease.

The leases themselves (store/redis/leases.py) belong to the store; this is the
Scrapy side. Only a scrapy-redis crawl imports this module (the add-on names it
in SCHEDULER_QUEUE_CLASS): importing scrapy-redis loads the whole Redis client,
a quarter of a second that a crawl on SQLite does not pay.
"""

from __future__ import annotations

from collections import deque
from functools import cached_property
from typing import TYPE_CHECKING, Any

from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.components.shareddupefilter import PUSHING_QUEUES
from scrapy_resume.engine.requestmeta import CLAIM_META, KEY_META, LEASE_META
from scrapy_resume.store.redis.store import QueuedPush

try:
    from scrapy_redis.queue import PriorityQueue
except ImportError:  # scrapy-redis is optional: only a shared queue needs it
    PriorityQueue = object  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.runtime import CheckpointRuntime


class LeasedPriorityQueue(PriorityQueue):  # type: ignore[misc,valid-type]
    """scrapy-redis's priority queue, where a pop is also a lease.

    Set by the add-on as ``SCHEDULER_QUEUE_CLASS`` when SCHEDULER is
    scrapy-redis's. It relies on scrapy-redis's ``Base._decode_request`` (the
    queue classes' own decoding, meant for subclasses like this one);
    tests/integration/test_redis_workers.py fails loudly if that changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SharedDupeFilter, made after the queue, finds it here; it then lets a new
        # request through with a read, and this adds its fingerprint as it pushes it
        self.dupefilter: Any = None
        PUSHING_QUEUES[self.spider.crawler] = self

    def push(self, request: Request) -> None:
        if request.meta.pop(CLAIM_META, False):  # (popped first: it is not serialized)
            self._claim_and_push(request)
        elif self.dupefilter is None or request.dont_filter:  # (no fingerprint to add)
            super().push(request)
        else:
            self.dupefilter.push_new(self.key, -request.priority,
                                     self._encode_request(request), request)

    def _claim_and_push(self, request: Request) -> None:
        """A start request of a shared stage: claimed for this worker (unless another
        worker or an earlier run has it) and pushed, in one step."""
        adds = self.dupefilter is not None and not request.dont_filter
        push = QueuedPush(
            self.key, -request.priority, self._encode_request(request),
            self.dupefilter.key if adds else "",
            self.dupefilter.fingerprint_of(request) if adds else "",
        )
        self.checkpoint_runtime.store.claim(request.meta[KEY_META], request.url, push)

    @cached_property
    def checkpoint_runtime(self) -> CheckpointRuntime | None:
        """The crawl's checkpoint state, looked up once rather than at every pop."""
        return runtime_of(self.spider.crawler)

    @cached_property
    def taken(self) -> deque[tuple[bytes, str]]:
        """Requests popped and leased together, that the engine has not asked for yet
        (it asks for one at a time, as long as the downloader has room)."""
        return deque()

    def __len__(self) -> int:
        # the requests taken are this worker's pending ones: it is not idle while any is left
        return super().__len__() + len(self.taken)

    def pop(self, timeout: int = 0) -> Request | None:
        runtime = self.checkpoint_runtime
        worker = runtime.worker if runtime is not None and runtime.active else None
        if worker is None:  # checkpointing is off or refused for this crawl
            return super().pop(timeout)
        if not self.taken:  # one call to Redis for as many as the downloader has room for
            self.taken.extend(worker.take(self.key, free_download_slots(self.spider.crawler)))
        if not self.taken:
            return None
        data, lease = self.taken.popleft()
        request = self._decode_request(data)
        request.meta[LEASE_META] = lease
        return request


#: The most requests one pop takes off the shared queue.
MOST_TAKEN = 32


def free_download_slots(crawler: Crawler) -> int:
    """How many more requests the downloader takes now: the engine asks the
    scheduler for requests, one by one, until ``len(downloader.active)`` reaches
    ``downloader.total_concurrency`` (CONCURRENT_REQUESTS, 0 for no limit). Both
    are public attributes of Scrapy's Downloader; a downloader without them gets
    one at a time (tests/unit/test_components.py fails loudly if they go)."""
    downloader: Any = getattr(crawler.engine, "downloader", None)
    try:
        limit, active = downloader.total_concurrency, len(downloader.active)
    except (AttributeError, TypeError):
        return 1
    return MOST_TAKEN if limit <= 0 else max(1, min(MOST_TAKEN, limit - active))
