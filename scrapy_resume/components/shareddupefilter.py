"""SharedDupeFilter: scrapy-redis's dupefilter, whose add of a new request goes
with the request's push onto the shared queue, in one step.

scrapy-redis's scheduler asks its dupefilter (a SADD: 1, a new request; 0, a
duplicate), then pushes the request (a ZADD). Two ways to lose a request there:
- a worker killed between the two leaves the fingerprint "seen" and the request
  nowhere: when its parent is fetched again, the link is dropped as a duplicate;
- when the connection drops after the server ran the SADD and before its reply
  came (a Redis restart, a failover), the client (which the add-on has retry, as
  ours does: REDIS_PARAMS) sends it again, gets 0, and the new request is
  dropped as a duplicate of itself.

With LeasedPriorityQueue (the add-on sets both), asking is a read (SISMEMBER),
and the queue's push adds the fingerprint and the request together
(lua/push_new.lua): a push sent again finds the fingerprint and adds nothing.
Without it (scrapy-redis's queue and no checkpoint, or Scrapy's scheduler), the
add is a Lua script that numbers this worker's calls (lua/dupefilter_add.lua):
the call sent again finds its number and still answers "new".

Like LeasedPriorityQueue, only a scrapy-redis crawl imports this module.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from scrapy_resume.store.redis.connection import new_worker_id
from scrapy_resume.store.redis.keys import CALLS_SUFFIX
from scrapy_resume.store.redis.scripts import lua

try:
    from scrapy_redis.dupefilter import RFPDupeFilter
except ImportError:  # scrapy-redis is optional: only a shared queue needs it
    RFPDupeFilter = object  # type: ignore[assignment,misc]

#: each crawl's LeasedPriorityQueue, made by scrapy-redis's scheduler before the dupefilter
PUSHING_QUEUES: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


class SharedDupeFilter(RFPDupeFilter):  # type: ignore[misc,valid-type]
    """scrapy-redis's RFPDupeFilter (same set, same fingerprints, same log lines),
    whose add of a new request is the queue's push, or else applied once."""

    def __init__(self, server: Any, key: str, debug: bool = False) -> None:
        super().__init__(server, key, debug)
        #: each worker's last call, beside the set (and cleared with it)
        self.calls_key = key + CALLS_SUFFIX
        self.writer = new_worker_id()
        self.calls_sent = 0
        self.added_by_queue = False  # see from_spider
        self.last: tuple[Any, str] | None = None  # the request last asked about, its fingerprint
        self._add = server.register_script(lua("dupefilter_add"))
        self._push_new = server.register_script(lua("push_new"))

    @classmethod
    def from_spider(cls, spider: Any) -> SharedDupeFilter:
        dupefilter = super().from_spider(spider)
        queue = PUSHING_QUEUES.get(spider.crawler)
        if queue is not None:  # it pushes what this lets through
            queue.dupefilter = dupefilter
            dupefilter.added_by_queue = True
        return dupefilter

    def request_seen(self, request: Any) -> bool:
        fingerprint = self.request_fingerprint(request)
        if self.added_by_queue:
            self.last = (request, fingerprint)  # asked right before the push
            return bool(self.server.sismember(self.key, fingerprint))
        self.calls_sent += 1
        return bool(self._add(keys=[self.key, self.calls_key],
                              args=[fingerprint, self.writer, self.calls_sent]))

    def fingerprint_of(self, request: Any) -> str:
        last = self.last  # (the push comes right after the question)
        return last[1] if last is not None and last[0] is request else (
            self.request_fingerprint(request))

    def push_new(self, queue_key: str, score: float, data: bytes, request: Any) -> None:
        """Push ``request`` (``data``, encoded by the queue) and add its fingerprint.
        Another worker may have pushed it since it was asked about: then nothing."""
        self._push_new(keys=[self.key, queue_key],
                       args=[self.fingerprint_of(request), score, data])

    def clear(self) -> None:
        self.server.delete(self.key, self.calls_key)
