"""RedisStore: a stage's ledger in Redis. Every worker of the stage has one."""

from __future__ import annotations

import json
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

from scrapy_resume.store.base import BaseCheckpointStore, CheckpointCorrupt
from scrapy_resume.store.records import (
    CommitBatch,
    KeyIndex,
    RequestStatus,
    StageStatus,
    StageSummary,
    statuses,
)
from scrapy_resume.store.redis.connection import new_worker_id, this_host
from scrapy_resume.store.redis.copying import StageCopying
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.redis.scripts import lua
from scrapy_resume.store.signing import RequestSigner, signature_problems

# Layout 2 stores each record as a JSON object. Layout 1 stored the same fields as
# an array, in RECORD_FIELDS order: a stage written by version 1 is read as it is,
# each of its records converted when it is next written (commit.lua does the same).
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Per request: status (a digit) in one hash, the record in another, as a JSON
# object with these fields (a field that is empty is left out). A pending or
# failed request's signed serialized form is in ``blobs``, ordered by discovery
# in the ``frontier`` sorted set.
RECORD_FIELDS = ("seq", "url", "http_status", "error", "attempts", "created_at", "updated_at",
                 "info")


def decode_record(raw: bytes) -> dict[str, Any]:
    """A request's record as a dict of RECORD_FIELDS (from either layout)."""
    record = json.loads(raw)
    if isinstance(record, list):  # layout 1: the same fields by position, false for empty
        record = {name: value for name, value in zip(RECORD_FIELDS, record) if value is not False}
    return record


class QueuedPush(NamedTuple):
    """A request as scrapy-redis's priority queue holds it: ``data`` (encoded by the
    queue) at ``score`` in the sorted set ``queue``; its ``fingerprint`` goes into
    the ``dupefilter`` set with it ('' for a dont_filter request: none)."""

    queue: str
    score: float
    data: bytes
    dupefilter: str
    fingerprint: str


class RedisStore(StageCopying, BaseCheckpointStore):
    """A stage's ledger in Redis. Every worker of the stage has one."""

    def __init__(self, client: Any, stage: str, signer: RequestSigner, location: str):
        self.client = client
        self.keys = StageKeys(stage)
        self.signer = signer
        self.path = location  # for messages: where this stage lives
        self._commit_script = client.register_script(lua("commit"))
        self._claim_script = client.register_script(lua("claim"))
        self._begin_run_script = client.register_script(lua("begin_run"))
        # who sends this store's writes, and how many it sent: a commit, claim or run
        # the client sends twice (a retry after a lost reply) is applied once
        # (lua/commit.lua)
        self.writer = new_worker_id()
        self.writes_sent = 0
        if client.exists(self.keys.meta):
            self._check_schema()

    def _check_schema(self) -> None:
        version = self.client.hget(self.keys.meta, "schema_version")
        if version is None:
            raise CheckpointCorrupt(f"{self.path} has no schema_version")
        if int(version) not in READABLE_VERSIONS:
            readable = " and ".join(map(str, READABLE_VERSIONS))
            raise CheckpointCorrupt(
                f"{self.path} has Redis layout version {version.decode()}, this version of "
                f"scrapy-resume reads {readable}: it was written by a newer scrapy-resume"
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

    def _next_write(self) -> int:
        self.writes_sent += 1
        return self.writes_sent

    def begin_run(self, mode: str) -> int:
        keys = self.keys
        record = {"mode": mode, "started_at": time.time(), "ended_at": None,
                  "close_reason": None}
        return int(self._begin_run_script(
            keys=[keys.meta, keys.runs, keys.counters, keys.applied],
            args=[self.writer, self._next_write(), json.dumps(record)],
        ))

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

    def claim(self, key: bytes, url: str, push: QueuedPush | None = None) -> bool:
        """Claim a request's key; ``push``: and push the request onto scrapy-redis's
        queue, in the same step (a start request of a shared stage)."""
        keys = self.keys
        more_keys, more_args = ([push.queue, push.dupefilter], [push.score, push.data,
                                push.fingerprint]) if push is not None else ([], [])
        return bool(self._claim_script(
            keys=[keys.meta, keys.status, keys.record, keys.counts, keys.applied, *more_keys],
            args=[key, url, int(time.time()), self.writer, self._next_write(), *more_args],
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
                url = decode_record(record)["url"] if record else "?"
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
            entries.sort(key=lambda e: (e[1]["updated_at"], e[1]["seq"]), reverse=True)
        else:
            entries.sort(key=lambda e: e[1]["seq"])
        if limit >= 0:
            entries = entries[:limit]
        for found, rec in entries:
            yield {
                "url": rec["url"],
                "status": RequestStatus(found).name.lower(),
                "http_status": rec.get("http_status") or None,
                "error": rec.get("error") or None,
                "attempts": rec["attempts"],
                "created_at": rec["created_at"],
                "updated_at": rec["updated_at"],
                "info": json.loads(rec["info"]) if rec.get("info") else None,
            }

    def _records(self, keys: list[bytes]) -> dict[bytes, dict[str, Any]]:
        records: dict[bytes, dict[str, Any]] = {}
        for start in range(0, len(keys), 5000):
            chunk = keys[start:start + 5000]
            for key, raw in zip(chunk, self.client.hmget(self.keys.record, chunk)):
                if raw is not None:
                    records[key] = decode_record(raw)
        return records

    def runs(self) -> list[dict[str, Any]]:
        runs = self.client.hgetall(self.keys.runs)
        return [json.loads(runs[k]) for k in sorted(runs, key=int)]

    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]:
        """Every request of the stage as ``(key, status, url)``, in discovery order."""
        statuses = dict(self.client.hscan_iter(self.keys.status, count=10000))
        records = self._records(list(statuses))
        for key in sorted(records, key=lambda k: records[k]["seq"]):
            yield key, RequestStatus(int(statuses[key])), records[key]["url"]

    def _json_hash(self, name: str) -> dict[str, Any]:
        stored = self.client.hgetall(getattr(self.keys, name))
        return {k.decode(): json.loads(v) for k, v in stored.items()}

    def cursors(self) -> dict[str, Any]:
        return self._json_hash("cursors")

    def _this_host_ints(self, key: str) -> dict[str, int]:
        # feed files are local to each worker's host: their entries are kept per host
        prefix = f"{this_host()}:"
        return {
            k.decode()[len(prefix):]: int(v)
            for k, v in self.client.hgetall(key).items()
            if k.decode().startswith(prefix)
        }

    def feed_offsets(self) -> dict[str, int]:
        return self._this_host_ints(self.keys.feeds)

    def feed_starts(self) -> dict[str, int]:
        return self._this_host_ints(self.keys.feed_starts)

    def state(self) -> dict[str, Any]:
        return self._json_hash("state")

    def commit(self, batch: CommitBatch) -> int:
        """Returns how many settlements were fenced off: their leases were no longer
        this worker's at the commit (see lua/commit.lua)."""
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
                s.lease or "",
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
            "feed_starts": {f"{host}:{path}": start for path, start in batch.feed_starts.items()},
            "state": {name: json.dumps(value) for name, value in batch.state.items()},
            "release": batch.released_leases,
            "worker": batch.worker,
            "writer": self.writer,
            "commit": str(self._next_write()),
            "schema_version": SCHEMA_VERSION,  # a layout-1 stage is layout 2 once written
            "progress": batch.progress,  # and a sample of its counts (lua/commit.lua)
        }
        # an empty Lua table encodes as {}; cjson decodes {} as an empty table either way
        keys = self.keys
        _, fenced = self._commit_script(
            keys=[
                keys.meta, keys.status, keys.record, keys.frontier, keys.blobs, keys.counts,
                keys.counters, keys.cursors, keys.feeds, keys.feed_starts, keys.state,
                *keys.leases(), keys.applied, keys.progress, keys.runs,
            ],
            args=[json.dumps(header), *args],
        )
        return int(fenced)

    def check(self) -> list[str]:
        problems = []
        kept = {int(k): int(v) for k, v in self.client.hgetall(self.keys.counts).items()}
        statuses = dict(self.client.hscan_iter(self.keys.status, count=10000))
        counted = Counter(int(status) for status in statuses.values())
        for status in RequestStatus:
            if kept.get(status, 0) != counted.get(status, 0):
                problems.append(f"{status.name.lower()} requests: counted "
                                f"{kept.get(status, 0):,}, but the ledger holds "
                                f"{counted.get(status, 0):,}")
        blobs = {k: v for k, v in self.client.hscan_iter(self.keys.blobs, count=1000) if v}
        records = self._records(list(blobs))
        return problems + signature_problems(self.signer, (
            (key, blob, records.get(key, {}).get("url", "?")) for key, blob in blobs.items()
        ))

    def progress(self) -> list[dict[str, Any]]:
        return [json.loads(sample) for sample in self.client.lrange(self.keys.progress, 0, -1)]

    def close(self) -> None:
        self.client.close()
