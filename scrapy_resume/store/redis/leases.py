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

from collections.abc import Sequence
from typing import Any

from scrapy_resume.store.redis.connection import process_is_gone, server_time_ms
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.redis.lock import Heartbeat
from scrapy_resume.store.redis.scripts import lua


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
        self.pops_sent = 0  # numbers this worker's pops: one re-sent is applied once
        self.heartbeat = Heartbeat(self.beat, lease_seconds / 3, "this worker's leases")
        self._pop = client.register_script(lua("pop_and_lease", with_clock=True))
        self._heartbeat_script = client.register_script(lua("heartbeat", with_clock=True))
        self._join = client.register_script(lua("join", with_clock=True))
        self._end = client.register_script(lua("end_leases", with_clock=True))
        self._fence = client.register_script(lua("fence", with_clock=True))

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

    def take(self, queue_key: str, count: int = 1) -> list[tuple[bytes, str]]:
        """Pop up to ``count`` of the queue's next requests and lease them, in one
        step. The queue is on this stage's server: the extension refuses a crawl
        where it is not."""
        self.pops_sent += 1
        found = self._pop(
            keys=[self.keys.meta, queue_key, *self.keys.leases(), self.keys.applied],
            args=[self.worker_id, self.lease_ms, count, self.pops_sent],
        )
        taken = [(found[n], found[n + 1].decode()) for n in range(0, len(found), 2)]
        self.held.update(lease for _, lease in taken)
        return taken

    def fence(self, leases: Sequence[str]) -> list[str]:
        """Before a commit settles the requests of ``leases``: those this worker no
        longer holds (it was paused past their expiry, and another worker took them
        back); the others are renewed, so that they cannot expire before the commit."""
        lost = [lease.decode() for lease in self._fence(
            keys=[self.keys.lease_expiry, self.keys.lease_owner],
            args=[self.worker_id, self.lease_ms, *leases],
        )]
        self.held.difference_update(lost)
        return lost

    def requeue(self, leases: Sequence[str]) -> int:
        """Put these leases' requests back in the queue now (a commit called off)."""
        self.held.difference_update(leases)
        return self._end_leases("requeue", leases) if leases else 0

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
        return self.requeue(sorted(self.held))

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


def live_workers(client: Any, keys: StageKeys) -> list[str]:
    """Workers whose heartbeat has not expired, but for dead processes of this host."""
    workers = client.zrangebyscore(keys.workers, server_time_ms(client), "+inf")
    return [w.decode() for w in workers if not process_is_gone(w.decode())]
