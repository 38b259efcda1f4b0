"""StageCopying: a SQLite stage read whole into a StageCopy, or written whole
from one (``scrapy checkpoint migrate``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from scrapy_resume.store.copying import CHUNK, LedgerRow, StageCopy, copy_fields
from scrapy_resume.store.signing import RequestSigner
from scrapy_resume.store.sqlite.schema import PROGRESS_TABLE

ROW_COLUMNS = "key, seq, status, url, http_status, error, attempts, created_at, updated_at, info"


class StageCopying:
    _db: sqlite3.Connection
    signer: RequestSigner

    _transaction: Callable[[], AbstractContextManager[None]]  # (CheckpointStore's)

    def export_copy(self) -> StageCopy:
        meta = dict(self._db.execute("SELECT name, value FROM meta"))
        return copy_fields(self, meta, self._rows_with_requests())

    def _rows_with_requests(self) -> Iterator[list[LedgerRow]]:
        columns = ", ".join(f"r.{name.strip()}" for name in ROW_COLUMNS.split(","))
        query = (f"SELECT {columns}, f.request FROM requests AS r "
                 f"LEFT JOIN frontier AS f ON f.key = r.key ORDER BY r.seq")
        cursor = self._db.execute(query)
        while chunk := cursor.fetchmany(CHUNK):
            rows = []
            for *fields, stored in chunk:
                key = bytes(fields[0])
                request = None if stored is None else self.signer.verified(
                    key, bytes(stored), fields[3])  # (a forged one stops the copy)
                rows.append(LedgerRow(key, *fields[1:], request))
            yield rows

    def import_copy(self, copy: StageCopy) -> None:
        """Into a stage just created (an empty ledger), in one transaction."""
        with self._transaction():
            last_seq = 0
            for rows in copy.rows:
                self._db.executemany(
                    f"INSERT INTO requests ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [row[:10] for row in rows])
                self._db.executemany(
                    "INSERT INTO frontier (seq, key, request) VALUES (?, ?, ?)",
                    [(row.seq, row.key, self.signer.sign(row.key, row.request))
                     for row in rows if row.request is not None])
                last_seq = max(last_seq, rows[-1].seq)
            self._write_maps(copy)
            for run in copy.runs:
                self._db.execute(
                    "INSERT INTO runs (mode, started_at, ended_at, close_reason) "
                    "VALUES (?, ?, ?, ?)",
                    (run["mode"], run["started_at"], run["ended_at"], run["close_reason"]))
            self._db.execute(PROGRESS_TABLE)
            self._db.executemany(
                "INSERT INTO progress (at, run, done, failed, dropped, pending, items) "
                "VALUES (:at, :run, :done, :failed, :dropped, :pending, :items)", copy.progress)
            meta = {name: copy.meta[name] for name in ("status", "created_at", "updated_at")}
            meta["next_seq"] = str(last_seq + 1)
            self._db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                 list(meta.items()))

    def _write_maps(self, copy: StageCopy) -> None:
        writes: list[tuple[str, dict[str, Any]]] = [
            ("cursors (name, value)", {k: json.dumps(v) for k, v in copy.cursors.items()}),
            ("counters (name, value)", copy.counters),
            ("feeds (path, committed_offset)", copy.feed_offsets),
            ("feed_starts (path, start_offset)", copy.feed_starts),
            ("state (name, value)", {k: json.dumps(v) for k, v in copy.state.items()}),
        ]
        for table, values in writes:
            self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)",
                                 list(values.items()))
