"""The shared backend: a stage's ledger in a Redis server, for crawls that run
on several workers (with scrapy-redis) or that should be inspectable from
elsewhere. Selected with ``CHECKPOINT_BACKEND = "redis://HOST:PORT/DB"``.

This is the only module that speaks Redis. A commit is one Lua script, so it is
atomic on the server whatever the other workers do: parent done, children
pending, counters, cursors, feed offsets and the leases it releases, all or
nothing. The lease side (taking a request from scrapy-redis's queue, putting
back the requests of dead workers) is in :mod:`.leases`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scrapy_resume.store.base import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    CommitBatch,
    KeyIndex,
    RequestStatus,
    StageStatus,
    StageSummary,
    statuses,
)
from scrapy_resume.store.signing import RequestSigner

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # of the Redis layout
NAMESPACE = "scrapy_resume"

# Per request: status (a digit) in one hash, the record in another, as a JSON
# array. A pending or failed request's signed serialized form is in ``blobs``,
# ordered by discovery in the ``frontier`` sorted set.
SEQ, URL, HTTP_STATUS, ERROR, ATTEMPTS, CREATED, UPDATED, INFO = range(1, 9)  # Lua indexes

_COMMIT = """
local h = cjson.decode(ARGV[1])
local meta, status, record = KEYS[1], KEYS[2], KEYS[3]
local frontier, blobs, counts = KEYS[4], KEYS[5], KEYS[6]
local now = h.now
local seq = tonumber(redis.call('HGET', meta, 'next_seq') or '1')
local i = 2
for n = 1, h.n_new do
  local key, url, blob = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if redis.call('HSETNX', status, key, '0') == 1 then
    redis.call('HSET', record, key, cjson.encode({seq, url, false, false, 0, now, now, false}))
    redis.call('HINCRBY', counts, '0', 1)
    if blob ~= '' then
      redis.call('ZADD', frontier, seq, key)
      redis.call('HSET', blobs, key, blob)
    end
    seq = seq + 1
  end
end
for n = 1, h.n_settle do
  local key, st, url, http = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local err, attempts, info, blob = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  local old = redis.call('HGET', status, key)
  local rec
  if old then
    rec = cjson.decode(redis.call('HGET', record, key))
    rec[5] = rec[5] + tonumber(attempts)
    if old ~= st then
      redis.call('HINCRBY', counts, old, -1)
      redis.call('HINCRBY', counts, st, 1)
    end
  else
    rec = {seq, url, false, false, tonumber(attempts), now, now, false}
    seq = seq + 1
    redis.call('HINCRBY', counts, st, 1)
  end
  if http == '' then rec[3] = false else rec[3] = tonumber(http) end
  if err == '' then rec[4] = false else rec[4] = err end
  if info == '' then rec[8] = false else rec[8] = info end
  rec[7] = now
  redis.call('HSET', status, key, st)
  redis.call('HSET', record, key, cjson.encode(rec))
  if st == '2' then
    if blob ~= '' then
      redis.call('HSET', blobs, key, blob)
      redis.call('ZADD', frontier, rec[1], key)
    end
  else
    redis.call('HDEL', blobs, key)
    redis.call('ZREM', frontier, key)
  end
end
for name, delta in pairs(h.counters) do redis.call('HINCRBY', KEYS[7], name, delta) end
for name, value in pairs(h.cursors) do redis.call('HSET', KEYS[8], name, value) end
for path, offset in pairs(h.feeds) do redis.call('HSET', KEYS[9], path, offset) end
for name, value in pairs(h.state) do redis.call('HSET', KEYS[10], name, value) end
for _, lease in ipairs(h.release) do
  redis.call('ZREM', KEYS[11], lease)
  for k = 12, 15 do redis.call('HDEL', KEYS[k], lease) end
end
redis.call('HSET', meta, 'next_seq', seq, 'updated_at', h.updated_at)
return seq
"""


_CLAIM = """
if redis.call('HSETNX', KEYS[2], ARGV[1], '0') == 0 then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'next_seq', 1) - 1
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode({seq, ARGV[2], false, false, 0, tonumber(ARGV[3]),
  tonumber(ARGV[3]), false}))
redis.call('HINCRBY', KEYS[4], '0', 1)
return 1
"""


def client_for(url: str) -> Any:
    """A client for ``redis://HOST:PORT/DB`` (bytes in, bytes out)."""
    import redis

    return redis.Redis.from_url(url, decode_responses=False)


def server_identity(client: Any) -> tuple[str, int, int]:
    """``(host, port, db)`` of a client: do two clients talk to the same data?"""
    kwargs = client.connection_pool.connection_kwargs
    return (
        str(kwargs.get("host", "localhost")).replace("localhost", "127.0.0.1"),
        int(kwargs.get("port", 6379)),
        int(kwargs.get("db", 0)),
    )


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/0'}"


@dataclass(frozen=True)
class StageKeys:
    """The names of one stage's Redis keys: ``scrapy_resume:STAGE:...``."""

    stage: str

    def __getattr__(self, name: str) -> str:
        return f"{NAMESPACE}:{self.stage}:{name}"

    def leases(self) -> list[str]:
        """The lease keys, in the order the Lua scripts take them: expiry (sorted
        set), then the hashes of each lease's queued request, its score in the
        queue, its owner and its queue."""
        return [self.lease_expiry, self.lease_request, self.lease_score, self.lease_owner,
                self.lease_queue]

    def data(self) -> list[str]:
        """Every key of the stage but its lock (a reset keeps the lock it holds)."""
        return [getattr(self, name) for name in (
            "meta", "status", "record", "frontier", "blobs", "counts", "counters", "cursors",
            "feeds", "state", "runs", "workers",
        )] + self.leases()


def this_host() -> str:
    return socket.gethostname()


def new_worker_id() -> str:
    """``host:pid:random``: a restarted process is a new worker."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_is_gone(worker_id: str) -> bool:
    """A worker of this host whose process no longer exists (killed, crashed)."""
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    if host != this_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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


# deletes the lock's key only while it still holds ARGV[1]
_DELETE_IF_HELD_BY = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"


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

    def acquire(self) -> None:
        holder = self._holder()
        if holder is not None and process_is_gone(holder):
            self.client.eval(_DELETE_IF_HELD_BY, 1, self.key, holder)  # only the dead one's
        if not self.client.set(self.key, self.worker_id, nx=True, px=self.ttl_ms):
            holder = self._holder() or "?"
            raise CheckpointLocked(self.key, holder)  # type: ignore[arg-type]
        self.held = True
        self.heartbeat.start()

    def _holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value is not None else None

    def renew(self) -> None:
        if self.held:
            self.client.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "redis.call('PEXPIRE', KEYS[1], ARGV[2]) end",
                1, self.key, self.worker_id, self.ttl_ms,
            )

    def release(self) -> None:
        self.heartbeat.stop()
        if self.held:
            self.client.eval(_DELETE_IF_HELD_BY, 1, self.key, self.worker_id)
            self.held = False

    def held_by_another(self) -> str | None:
        holder = self._holder()
        if holder is None or holder == self.worker_id or process_is_gone(holder):
            return None
        return holder


class RedisStore(BaseCheckpointStore):
    """A stage's ledger in Redis. Every worker of the stage has one."""

    def __init__(self, client: Any, stage: str, signer: RequestSigner, location: str):
        self.client = client
        self.keys = StageKeys(stage)
        self.signer = signer
        self.path = location  # for messages: where this stage lives
        self._commit_script = client.register_script(_COMMIT)
        self._claim_script = client.register_script(_CLAIM)
        if client.exists(self.keys.meta):
            self._check_schema()

    def _check_schema(self) -> None:
        version = self.client.hget(self.keys.meta, "schema_version")
        if version is None:
            raise CheckpointCorrupt(f"{self.path} has no schema_version")
        if int(version) != SCHEMA_VERSION:
            raise CheckpointCorrupt(
                f"{self.path} has Redis layout version {version.decode()}, this version of "
                f"scrapy-resume reads {SCHEMA_VERSION}"
            )

    # stage record

    def initialize(self, stage: str, spider: str, state: dict[str, Any] | None = None) -> None:
        now = repr(time.time())
        pipe = self.client.pipeline(transaction=True)  # MULTI: the stage appears whole
        pipe.hset(self.keys.meta, mapping={
            "schema_version": SCHEMA_VERSION, "stage": stage, "spider": spider,
            "status": StageStatus.INITIALIZED, "created_at": now, "updated_at": now,
            "next_seq": 1,
        })
        pipe.hset(self.keys.counts, mapping={str(int(s)): 0 for s in RequestStatus})
        if state:
            pipe.hset(self.keys.state, mapping={k: json.dumps(v) for k, v in state.items()})
        pipe.execute()

    def summary(self) -> StageSummary:
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.keys.meta)
        pipe.hgetall(self.keys.counts)
        pipe.hgetall(self.keys.counters)
        raw_meta, raw_counts, raw_counters = pipe.execute()
        if not raw_meta:
            raise CheckpointCorrupt(f"{self.path} holds no stage record")
        meta = {k.decode(): v.decode() for k, v in raw_meta.items()}
        counts = {int(k): int(v) for k, v in raw_counts.items()}
        counters = {k.decode(): int(v) for k, v in raw_counters.items()}
        return StageSummary.from_records(meta, counts, counters)

    def counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.keys.counters).items()}

    def set_status(self, status: str) -> None:
        now = repr(time.time())
        self.client.hset(self.keys.meta, mapping={"status": status, "updated_at": now})

    def begin_run(self, mode: str) -> int:
        run_id = self.client.hincrby(self.keys.meta, "run_seq", 1)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.runs, run_id, json.dumps(
            {"mode": mode, "started_at": time.time(), "ended_at": None, "close_reason": None}
        ))
        pipe.hincrby(self.keys.counters, "runs", 1)
        pipe.execute()
        return int(run_id)

    def end_run(self, run_id: int, reason: str) -> None:
        raw = self.client.hget(self.keys.runs, run_id)
        run = json.loads(raw) if raw else {"mode": "?", "started_at": time.time()}
        run.update(ended_at=time.time(), close_reason=reason)
        self.client.hset(self.keys.runs, run_id, json.dumps(run))

    # the ledger

    @staticmethod
    def _statuses(*, settled: bool, include_failed: bool) -> frozenset[bytes]:
        """The statuses as stored in the status hash, e.g. ``{b"1", b"3"}``."""
        chosen = statuses(settled=settled, include_failed=include_failed)
        return frozenset(str(int(status)).encode() for status in chosen)

    def _keys_with(self, statuses: frozenset[bytes]) -> Iterator[bytes]:
        """The key of every request with one of ``statuses``, read in chunks."""
        for key, status in self.client.hscan_iter(self.keys.status, count=10000):
            if status in statuses:
                yield key

    def finished_index(self, *, include_failed: bool = True) -> KeyIndex:
        statuses = self._statuses(settled=True, include_failed=include_failed)
        prefixes = array("Q", (KeyIndex.prefix(key) for key in self._keys_with(statuses)))
        return KeyIndex(prefixes, lambda k: self.is_finished(k, include_failed=include_failed))

    def is_finished(self, key: bytes, *, include_failed: bool = True) -> bool:
        status = self.client.hget(self.keys.status, key)
        return status in self._statuses(settled=True, include_failed=include_failed)

    def frontier_index(self, *, include_failed: bool = False) -> KeyIndex:
        # every stored request (failed ones too); the confirmation checks the status
        prefixes = array("Q", (
            KeyIndex.prefix(key) for key in self.client.zrange(self.keys.frontier, 0, -1)
        ))
        return KeyIndex(prefixes, lambda k: self.is_pending(k, include_failed=include_failed))

    def is_pending(self, key: bytes, *, include_failed: bool = False) -> bool:
        status = self.client.hget(self.keys.status, key)
        return status in self._statuses(settled=False, include_failed=include_failed)

    def claim(self, key: bytes, url: str) -> bool:
        keys = self.keys
        return bool(self._claim_script(
            keys=[keys.meta, keys.status, keys.record, keys.counts],
            args=[key, url, int(time.time())],
        ))

    def iter_pending(
        self, batch_size: int = 1000, *, include_failed: bool = False
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        # the frontier as it is now: requests added later are not restored
        newest = self.client.zrevrange(self.keys.frontier, 0, 0, withscores=True)
        last = int(newest[0][1]) if newest else 0
        return self._pending_batches(batch_size, include_failed, last)

    def _pending_batches(
        self, batch_size: int, include_failed: bool, last: int
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        statuses = self._statuses(settled=False, include_failed=include_failed)
        low = "-inf"
        while True:
            entries = self.client.zrangebyscore(
                self.keys.frontier, low, last, start=0, num=batch_size, withscores=True
            )
            if not entries:
                return
            low = f"({int(entries[-1][1])}"
            keys = [key for key, _ in entries]
            pipe = self.client.pipeline(transaction=True)
            pipe.hmget(self.keys.status, keys)
            pipe.hmget(self.keys.blobs, keys)
            pipe.hmget(self.keys.record, keys)
            found_statuses, blobs, records = pipe.execute()
            batch = []
            for key, status, blob, record in zip(keys, found_statuses, blobs, records):
                if status not in statuses or blob is None:
                    continue
                url = json.loads(record)[URL - 1] if record else "?"
                batch.append((key, self.signer.verified(key, blob, url)))
            if batch:
                yield batch

    def pending_keys(self) -> list[bytes]:
        return list(self._keys_with(self._statuses(settled=False, include_failed=False)))

    def ledger_rows(
        self, status: RequestStatus | None = None, *, newest_first: bool = False, limit: int = -1
    ) -> Iterator[dict[str, Any]]:
        wanted = None if status is None else str(int(status)).encode()
        rows = []
        for key, found in self.client.hscan_iter(self.keys.status, count=10000):
            if wanted is None or found == wanted:
                rows.append((key, found))
        records = self._records([key for key, _ in rows])
        entries = [(int(found), records[key]) for key, found in rows if key in records]
        if newest_first:
            entries.sort(key=lambda e: (e[1][UPDATED - 1], e[1][SEQ - 1]), reverse=True)
        else:
            entries.sort(key=lambda e: e[1][SEQ - 1])
        if limit >= 0:
            entries = entries[:limit]
        for found, rec in entries:
            yield {
                "url": rec[URL - 1],
                "status": RequestStatus(found).name.lower(),
                "http_status": rec[HTTP_STATUS - 1] or None,
                "error": rec[ERROR - 1] or None,
                "attempts": rec[ATTEMPTS - 1],
                "created_at": rec[CREATED - 1],
                "updated_at": rec[UPDATED - 1],
                "info": json.loads(rec[INFO - 1]) if rec[INFO - 1] else None,
            }

    def _records(self, keys: list[bytes]) -> dict[bytes, list[Any]]:
        records: dict[bytes, list[Any]] = {}
        for start in range(0, len(keys), 5000):
            chunk = keys[start:start + 5000]
            for key, raw in zip(chunk, self.client.hmget(self.keys.record, chunk)):
                if raw is not None:
                    records[key] = json.loads(raw)
        return records

    def runs(self) -> list[dict[str, Any]]:
        runs = self.client.hgetall(self.keys.runs)
        return [json.loads(runs[k]) for k in sorted(runs, key=int)]

    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]:
        """Every request of the stage as ``(key, status, url)``, in discovery order."""
        statuses = dict(self.client.hscan_iter(self.keys.status, count=10000))
        records = self._records(list(statuses))
        for key in sorted(records, key=lambda k: records[k][SEQ - 1]):
            yield key, RequestStatus(int(statuses[key])), records[key][URL - 1]

    def _json_hash(self, name: str) -> dict[str, Any]:
        stored = self.client.hgetall(getattr(self.keys, name))
        return {k.decode(): json.loads(v) for k, v in stored.items()}

    def cursors(self) -> dict[str, Any]:
        return self._json_hash("cursors")

    def feed_offsets(self) -> dict[str, int]:
        # feed files are local to each worker's host: offsets are kept per host
        prefix = f"{this_host()}:"
        return {
            k.decode()[len(prefix):]: int(v)
            for k, v in self.client.hgetall(self.keys.feeds).items()
            if k.decode().startswith(prefix)
        }

    def state(self) -> dict[str, Any]:
        return self._json_hash("state")

    def commit(self, batch: CommitBatch) -> None:
        now = int(time.time())
        pending, discovered_url = batch.requests_to_write()
        args: list[Any] = []
        for r in pending:
            blob = self.signer.sign(r.key, r.blob) if r.blob is not None else b""
            args += (r.key, r.url, blob)
        for s in batch.settlements:
            keep = s.status == RequestStatus.FAILED and s.blob is not None
            args += (
                s.key, str(int(s.status)), discovered_url.get(s.key, s.url),
                "" if s.http_status is None else str(s.http_status), s.error or "",
                str(s.attempts), "" if s.info is None else json.dumps(s.info, default=str),
                self.signer.sign(s.key, s.blob) if keep else b"",  # type: ignore[arg-type]
            )
        host = this_host()
        header = {
            "now": now,
            "updated_at": repr(time.time()),
            "n_new": len(pending),
            "n_settle": len(batch.settlements),
            "counters": {name: delta for name, delta in batch.counters.items() if delta},
            "cursors": {name: json.dumps(value) for name, value in batch.cursors.items()},
            "feeds": {f"{host}:{path}": offset for path, offset in batch.feed_offsets.items()},
            "state": {name: json.dumps(value) for name, value in batch.state.items()},
            "release": batch.released_leases,
        }
        # an empty Lua table encodes as {}; cjson decodes {} as an empty table either way
        keys = self.keys
        self._commit_script(
            keys=[
                keys.meta, keys.status, keys.record, keys.frontier, keys.blobs, keys.counts,
                keys.counters, keys.cursors, keys.feeds, keys.state, *keys.leases(),
            ],
            args=[json.dumps(header), *args],
        )

    def close(self) -> None:
        self.client.close()
