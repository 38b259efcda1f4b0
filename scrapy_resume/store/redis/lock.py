"""The exclusive lock of a stage on Redis, and the heartbeat that renews it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from scrapy_resume.store.base import CheckpointLocked
from scrapy_resume.store.redis.connection import process_is_gone
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.redis.scripts import lua

logger = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds from a daemon thread, until
    stopped: a long download or a blocked callback does not make a live process
    look dead, and the thread dies with its process."""

    def __init__(self, beat: Any, interval: float, what: str):
        self.beat = beat
        self.interval = interval
        self.what = what
        self._stopped = threading.Event()

    def start(self) -> None:
        self._stopped.clear()
        threading.Thread(target=self._run, name=f"scrapy-resume {self.what}", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # a Redis hiccup: the next beat tries again
                logger.warning("Cannot renew %s: %s", self.what, exc)


class RedisStageLock:
    """One process per stage, as with SQLite's flock, for a stage on Redis.

    The lock is a key that expires ``ttl`` seconds after its holder last
    renewed it (the holder renews it from a heartbeat thread). A holder on this
    host whose process is gone is taken over at once, so a killed run does not
    block its own resume.
    """

    def __init__(self, client: Any, keys: StageKeys, ttl: float, worker_id: str):
        self.client = client
        self.key = keys.lock
        self.ttl_ms = int(ttl * 1000)
        self.worker_id = worker_id
        self.held = False
        self.heartbeat = Heartbeat(self.renew, ttl / 3, f"the lock {self.key}")
        self._unlock = client.register_script(lua("unlock"))
        self._renew = client.register_script(lua("renew_lock"))

    def acquire(self) -> None:
        holder = self._holder()
        if holder is not None and process_is_gone(holder):
            self._unlock(keys=[self.key], args=[holder])  # only the dead one's
        if not self.client.set(self.key, self.worker_id, nx=True, px=self.ttl_ms):
            holder = self._holder()
            # ours: the reply to our SET was lost (a dropped connection) and the client
            # sent it again, which found the lock taken, by the first one
            if holder != self.worker_id:
                raise CheckpointLocked(self.key, holder or "?")  # type: ignore[arg-type]
        self.held = True
        self.heartbeat.start()

    def _holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value is not None else None

    def renew(self) -> None:
        if self.held:
            self._renew(keys=[self.key], args=[self.worker_id, self.ttl_ms])

    def release(self) -> None:
        self.heartbeat.stop()
        if self.held:
            self._unlock(keys=[self.key], args=[self.worker_id])
            self.held = False

    def held_by_another(self) -> str | None:
        holder = self._holder()
        if holder is None or holder == self.worker_id or process_is_gone(holder):
            return None
        return holder
