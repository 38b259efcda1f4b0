"""Several workers on one stage, sharing scrapy-redis's queue, and leases.

scrapy-redis pops a request from the shared queue destructively: if the worker
then dies, the request is gone while its fingerprint stays "seen", so no one
ever fetches it. Here a pop is also a lease, in one Lua script: the request's
queue entry is kept, with the worker's id and an expiry, until the commit that
settles the request releases it (in the same script as "done"). A live worker
renews its leases from a heartbeat thread; the leases of a dead worker expire,
and the live workers put their requests back in the queue.

A worker that runs out of work stays open while any lease is outstanding: the
crawl is finished only when the queue is empty and no lease is held.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from scrapy_resume.store.redis import Heartbeat, StageKeys, process_is_gone

logger = logging.getLogger(__name__)

# Redis's own clock, so that workers on machines whose clocks differ agree
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: meta, queue, then StageKeys.leases(): lease_expiry, lease_request, lease_score,
# lease_owner, lease_queue. ARGV: worker id, lease length (ms)
_POP_AND_LEASE = _NOW_MS + """
local found = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #found == 0 then return false end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
local id = tostring(redis.call('HINCRBY', KEYS[1], 'lease_seq', 1))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[4], id, found[1])
redis.call('HSET', KEYS[5], id, found[2])
redis.call('HSET', KEYS[6], id, ARGV[1])
redis.call('HSET', KEYS[7], id, KEYS[2])
return {found[1], id}
"""

# KEYS: workers, lease_expiry; ARGV: worker id, lease length (ms), the worker's lease ids
_HEARTBEAT = _NOW_MS + """
local until = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], until, ARGV[1])
for i = 3, #ARGV do redis.call('ZADD', KEYS[2], 'XX', until, ARGV[i]) end
"""

# KEYS: workers; ARGV: worker id, lease length (ms). Returns the other live workers.
_JOIN = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local others = {}
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if worker ~= ARGV[1] then table.insert(others, worker) end
end
return others
"""

# KEYS: StageKeys.leases(): lease_expiry, lease_request, lease_score, lease_owner,
# lease_queue. ARGV[1]: 'expired' (every expired lease), 'requeue' or 'release' (the ids
# that follow).
# Puts the requests of the chosen leases back in their queue (not for 'release'),
# and deletes the leases. Returns how many requests went back.
_END_LEASES = _NOW_MS + """
local ids = {}
if ARGV[1] == 'expired' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
else
  for i = 2, #ARGV do table.insert(ids, ARGV[i]) end
end
local requeued = 0
for _, id in ipairs(ids) do
  local request = redis.call('HGET', KEYS[2], id)
  if request and ARGV[1] ~= 'release' then
    local queue = redis.call('HGET', KEYS[5], id)
    redis.call('ZADD', queue, redis.call('HGET', KEYS[3], id), request)
    requeued = requeued + 1
  end
  redis.call('ZREM', KEYS[1], id)
  for k = 2, 5 do redis.call('HDEL', KEYS[k], id) end
end
return requeued
"""


class StageWorker:
    """This process's membership of a shared stage: it takes the place of the
    exclusive lock. Joining registers the worker (with an expiry its heartbeat
    renews); the leases it holds are renewed by the same heartbeat."""

    def __init__(self, client: Any, keys: StageKeys, lease_seconds: float, worker_id: str):
        self.client = client
        self.keys = keys
        self.lease_ms = int(lease_seconds * 1000)
        self.worker_id = worker_id
        self.others: list[str] = []  # the other live workers when this one joined
        self.held: set[str] = set()  # ids of the leases this worker holds
        self.to_release: list[str] = []  # released by the next commit
        self.queue_key = ""  # scrapy-redis's queue of the spider, set when the crawl opens
        self.heartbeat = Heartbeat(self.beat, lease_seconds / 3, "this worker's leases")
        self._pop = client.register_script(_POP_AND_LEASE)
        self._heartbeat_script = client.register_script(_HEARTBEAT)
        self._join = client.register_script(_JOIN)
        self._end = client.register_script(_END_LEASES)

    # the lock protocol (see backends.Lock)

    def acquire(self) -> None:
        others = self._join(keys=[self.keys.workers], args=[self.worker_id, self.lease_ms])
        self.others = [w.decode() for w in others if not process_is_gone(w.decode())]
        self.heartbeat.start()

    def release(self) -> None:
        self.heartbeat.stop()
        self.client.zrem(self.keys.workers, self.worker_id)

    def held_by_another(self) -> str | None:
        others = self.live_workers()
        return ", ".join(others) if others else None

    def beat(self) -> None:
        # tuple() copies the set in one step under the GIL, while the reactor adds to it
        self._heartbeat_script(
            keys=[self.keys.workers, self.keys.lease_expiry],
            args=[self.worker_id, self.lease_ms, *tuple(self.held)],
        )

    # leases

    def take(self, queue_key: str) -> tuple[bytes, str] | None:
        """Pop the queue's next request and lease it, in one step. The queue is
        on this stage's server: the extension refuses a crawl where it is not."""
        found = self._pop(
            keys=[self.keys.meta, queue_key, *self.keys.leases()],
            args=[self.worker_id, self.lease_ms],
        )
        if not found:
            return None
        data, lease = found[0], found[1].decode()
        self.held.add(lease)
        return data, lease

    def rescheduled(self, lease: str) -> None:
        """A leased request went back to the queue as a retry or a redirect: its
        copy is in the queue now, so the lease ends with the next commit."""
        self.to_release.append(lease)

    def releases(self) -> list[str]:
        taken, self.to_release = self.to_release, []
        return taken

    def committed(self, released: list[str]) -> None:
        self.held.difference_update(released)

    def _end_leases(self, how: str, ids: Sequence[str] = ()) -> int:
        return int(self._end(keys=self.keys.leases(), args=[how, *ids]))

    def release_leftovers(self) -> int:
        """At idle nothing is in flight: a lease still held belongs to a request
        that left without being settled (e.g. ignored by another middleware)."""
        leftovers = sorted(self.held)
        if leftovers:
            self._end_leases("release", leftovers)
            self.held.clear()
        return len(leftovers)

    def requeue_own(self) -> int:
        """At close: whatever this worker still holds goes back in the queue now."""
        own = sorted(self.held)
        self.held.clear()
        return self._end_leases("requeue", own) if own else 0

    def reclaim_expired(self) -> int:
        """Put the requests of expired leases (dead workers) back in their queue."""
        return self._end_leases("expired")

    def outstanding(self) -> int:
        return int(self.client.zcard(self.keys.lease_expiry))

    def expired(self) -> int:
        """Leases past their expiry: their workers are dead."""
        return int(self.client.zcount(self.keys.lease_expiry, "-inf", server_time_ms(self.client)))

    def queued(self) -> int:
        return int(self.client.zcard(self.queue_key)) if self.queue_key else 0

    def live_workers(self) -> list[str]:
        """The other workers of the stage whose heartbeat has not expired."""
        return [w for w in live_workers(self.client, self.keys) if w != self.worker_id]


def server_time_ms(client: Any) -> int:
    seconds, microseconds = client.time()
    return seconds * 1000 + microseconds // 1000


def live_workers(client: Any, keys: StageKeys) -> list[str]:
    """Workers whose heartbeat has not expired, but for dead processes of this host."""
    workers = client.zrangebyscore(keys.workers, server_time_ms(client), "+inf")
    return [w.decode() for w in workers if not process_is_gone(w.decode())]
