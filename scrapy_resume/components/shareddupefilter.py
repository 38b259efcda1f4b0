"""SharedDupeFilter: scrapy-redis's dupefilter, where a call sent twice adds once.

scrapy-redis adds each request's fingerprint to its shared set with SADD, which
answers 1 for a new request, 0 for a duplicate. When the connection drops after
the server ran the SADD and before its reply came (a Redis restart, a failover,
a network blip), the client sends it again (the add-on has scrapy-redis's client
retry, as ours does: REDIS_PARAMS), gets 0, and the scheduler drops a new
request as the duplicate of itself: lost. Here the add is a Lua script that
numbers this worker's calls (lua/dupefilter_add.lua): the call sent again finds
its number and still answers "new".

The add-on puts it in the place of scrapy-redis's RFPDupeFilter; like
LeasedPriorityQueue, only a scrapy-redis crawl imports this module.
"""

from __future__ import annotations

from typing import Any

from scrapy_resume.components.queue import CALLS_SUFFIX
from scrapy_resume.store.redis.connection import new_worker_id
from scrapy_resume.store.redis.scripts import lua

try:
    from scrapy_redis.dupefilter import RFPDupeFilter
except ImportError:  # scrapy-redis is optional: only a shared queue needs it
    RFPDupeFilter = object  # type: ignore[assignment,misc]


class SharedDupeFilter(RFPDupeFilter):  # type: ignore[misc,valid-type]
    """scrapy-redis's RFPDupeFilter (same set, same fingerprints, same log lines),
    whose add of a fingerprint is applied once."""

    def __init__(self, server: Any, key: str, debug: bool = False) -> None:
        super().__init__(server, key, debug)
        #: each worker's last call, beside the set (and cleared with it)
        self.calls_key = key + CALLS_SUFFIX
        self.writer = new_worker_id()
        self.calls_sent = 0
        self._add = server.register_script(lua("dupefilter_add"))

    def request_seen(self, request: Any) -> bool:
        self.calls_sent += 1
        return bool(self._add(
            keys=[self.key, self.calls_key],
            args=[self.request_fingerprint(request), self.writer, self.calls_sent],
        ))

    def clear(self) -> None:
        self.server.delete(self.key, self.calls_key)
