"""StageCopying: a Redis stage read whole into a StageCopy, or written whole
from one (``scrapy checkpoint migrate``), in the layout commit.lua keeps."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from scrapy_resume.store.copying import CHUNK, LedgerRow, StageCopy, copy_fields
from scrapy_resume.store.redis.connection import this_host
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.signing import RequestSigner

OPTIONAL = ("http_status", "error", "info")  # left out of a record when empty


class StageCopying:
    client: Any
    keys: StageKeys
    signer: RequestSigner

    _records: Callable[[list[bytes]], dict[bytes, dict[str, Any]]]  # (RedisStore's)

    def export_copy(self) -> StageCopy:
        meta = {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys.meta).items()}
        return copy_fields(self, meta, self._rows_with_requests())

    def _rows_with_requests(self) -> Iterator[list[LedgerRow]]:
        statuses = dict(self.client.hscan_iter(self.keys.status, count=10000))
        records = self._records(list(statuses))
        ordered = sorted(records, key=lambda key: records[key]["seq"])
        for start in range(0, len(ordered), CHUNK):
            keys = ordered[start:start + CHUNK]
            rows = []
            for key, stored in zip(keys, self.client.hmget(self.keys.blobs, keys)):
                r = records[key]
                request = self.signer.verified(key, stored, r["url"]) if stored else None
                rows.append(LedgerRow(
                    key, r["seq"], int(statuses[key]), r["url"], r.get("http_status"),
                    r.get("error"), r["attempts"], r["created_at"], r["updated_at"],
                    r.get("info"), request))
            yield rows

    def import_copy(self, copy: StageCopy) -> None:
        """Into a stage just created (an empty ledger)."""
        keys, host = self.keys, this_host()
        counts: Counter[str] = Counter()
        last_seq = 0
        for rows in copy.rows:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(keys.status, mapping={row.key: str(row.status) for row in rows})
            pipe.hset(keys.record, mapping={row.key: json.dumps(record_of(row)) for row in rows})
            stored = [row for row in rows if row.request is not None]
            if stored:
                pipe.zadd(keys.frontier, {row.key: row.seq for row in stored})
                pipe.hset(keys.blobs, mapping={
                    row.key: self.signer.sign(row.key, row.request) for row in stored})
            pipe.execute()
            counts.update(str(row.status) for row in rows)
            last_seq = max(last_seq, rows[-1].seq)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.counts, mapping={str(status): counts.get(str(status), 0)
                                        for status in range(4)})
        for name, values in (("cursors", copy.cursors), ("state", copy.state)):
            if values:
                pipe.hset(getattr(keys, name), mapping={k: json.dumps(v)
                                                        for k, v in values.items()})
        if copy.counters:
            pipe.hset(keys.counters, mapping=copy.counters)
        for name, values in (("feeds", copy.feed_offsets), ("feed_starts", copy.feed_starts)):
            if values:  # (kept per host: this one's, where the files are)
                pipe.hset(getattr(keys, name), mapping={f"{host}:{k}": v
                                                        for k, v in values.items()})
        if copy.runs:
            pipe.hset(keys.runs, mapping={str(n): json.dumps(run)
                                          for n, run in enumerate(copy.runs, start=1)})
        if copy.progress:
            pipe.rpush(keys.progress, *(json.dumps(sample) for sample in copy.progress))
        pipe.hset(keys.meta, mapping={
            **{name: copy.meta[name] for name in ("status", "created_at", "updated_at")},
            "next_seq": last_seq + 1, "run_seq": len(copy.runs),
        })
        pipe.execute()


def record_of(row: LedgerRow) -> dict[str, Any]:
    record = {"seq": row.seq, "url": row.url, "attempts": row.attempts,
              "created_at": row.created_at, "updated_at": row.updated_at}
    record.update((name, getattr(row, name)) for name in OPTIONAL
                  if getattr(row, name) not in (None, ""))
    return record
