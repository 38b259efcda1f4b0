"""CheckpointStore: the ledger of one stage, in one SQLite file in WAL mode."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scrapy_resume.store.base import BaseCheckpointStore, CheckpointCorrupt
from scrapy_resume.store.privatefiles import (
    create_private_file,
    private_directory,
    refuse_symlink,
)
from scrapy_resume.store.records import (
    CommitBatch,
    KeyIndex,
    RequestStatus,
    StageStatus,
    StageSummary,
    statuses,
)
from scrapy_resume.store.signing import RequestSigner
from scrapy_resume.store.sqlite.copying import StageCopying
from scrapy_resume.store.sqlite.schema import (
    ADD_PENDING,
    ADD_TO_FRONTIER,
    FEED_STARTS_TABLE,
    KEEP_FAILED,
    LEAVE_FRONTIER,
    PROGRESS_TABLE,
    SAMPLE_PROGRESS,
    SCHEMA,
    SCHEMA_VERSION,
    SETTLE,
)
from scrapy_resume.store.sqlite.views import StageViews


class CheckpointStore(StageViews, StageCopying, BaseCheckpointStore):
    """The embedded default: one SQLite file per stage, in WAL mode.

    WAL with ``synchronous=NORMAL`` survives the death of the process;
    ``fsync=True`` switches to ``FULL`` for power-loss safety.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False,
                 read_only: bool = False):
        self.path = Path(path)
        refuse_symlink(self.path)
        self.signer = RequestSigner(self.path.parent)  # a checkpoint holds pickles: signed
        self._next_seq: int | None = None  # the next discovery number, once read
        try:
            if read_only:  # (scrapy checkpoint verify: not even a WAL checkpoint at close)
                # with no WAL beside it, the file holds everything, and nobody writes it:
                # "immutable", or SQLite would create an empty WAL and its index
                wal = Path(f"{self.path}-wal").exists()
                uri = f"{self.path.absolute().as_uri()}?mode=ro{'' if wal else '&immutable=1'}"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                           check_same_thread=False)
                self._check_schema()
                return
            private_directory(self.path.parent)
            fresh = not self.path.exists()
            if fresh:
                os.close(create_private_file(self.path))  # 0600 from the start, not after
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            # Copy the WAL back into the database every 16 MB instead of every 4 MB:
            # random keys dirty the same pages again and again, and a checkpoint
            # copies each page once (measured: commits 25% cheaper).
            self._db.execute("PRAGMA wal_autocheckpoint=4000")
            if not fresh:
                self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise CheckpointCorrupt(f"{self.path} is not a readable checkpoint: {exc}") from exc

    def leave_wal(self) -> None:
        """Switch to a rollback journal: the stage is one file, with no WAL beside it."""
        self._db.execute("PRAGMA journal_mode=DELETE")

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if row is None:
            raise CheckpointCorrupt(f"{self.path} has no schema_version")
        if int(row[0]) != SCHEMA_VERSION:
            raise CheckpointCorrupt(
                f"{self.path} has schema_version {row[0]}, this version of scrapy-resume "
                f"reads {SCHEMA_VERSION}"
            )

    # stage record

    def initialize(self, stage: str, spider: str, state: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self._transaction():
            for statement in SCHEMA:
                self._db.execute(statement)
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("stage", stage),
                    ("spider", spider),
                    ("status", StageStatus.INITIALIZED),
                    ("created_at", repr(now)),
                    ("updated_at", repr(now)),
                ],
            )
            self._write_state(state or {})

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT name, value FROM meta"))

    def summary(self) -> StageSummary:
        with self._reading():
            meta = self._meta()
            # kept up to date by triggers, so a summary never scans the ledger
            by_status = dict(self._db.execute("SELECT status, n FROM status_counts"))
            counters = self.counters()
        return StageSummary.from_records(meta, by_status, counters)

    def counters(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, value FROM counters"))

    def set_status(self, status: str) -> None:
        with self._transaction():
            self._set_meta("status", status)

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
        )
        if name != "updated_at":
            self._db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('updated_at', ?)",
                (repr(time.time()),),
            )

    def begin_run(self, mode: str) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (mode, started_at) VALUES (?, ?)", (mode, time.time())
            )
            self._add_counters({"runs": 1})
        return int(cursor.lastrowid)

    def end_run(self, run_id: int, reason: str) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET ended_at = ?, close_reason = ? WHERE id = ?",
                (time.time(), reason, run_id),
            )

    # the ledger

    @staticmethod
    def _statuses(*, settled: bool, include_failed: bool) -> str:
        """The statuses as an SQL list, e.g. ``(1, 3)``."""
        chosen = statuses(settled=settled, include_failed=include_failed)
        return f"({', '.join(str(int(status)) for status in chosen)})"

    def _key_index(self, query: str, confirm: Callable[[bytes], bool]) -> KeyIndex:
        # One query returns every key's first 8 bytes as one hex string, in key
        # order: building the index is C-speed work (about 0.4 s for 1M keys).
        with self._reading():
            (hex_prefixes,) = self._db.execute(
                "SELECT group_concat(prefix, '') FROM (SELECT "
                f"substr(hex(key) || '0000000000000000', 1, 16) AS prefix {query} ORDER BY key)"
            ).fetchone()
        prefixes = array("Q", bytes.fromhex(hex_prefixes or ""))
        if sys.byteorder == "little":
            prefixes.byteswap()  # the bytes are big-endian: sorted bytes, sorted integers
        return KeyIndex(prefixes, confirm)

    def finished_index(self, *, include_failed: bool = True) -> KeyIndex:
        statuses = self._statuses(settled=True, include_failed=include_failed)
        return self._key_index(
            f"FROM requests WHERE status IN {statuses}",
            lambda key: self.is_finished(key, include_failed=include_failed),
        )

    def is_finished(self, key: bytes, *, include_failed: bool = True) -> bool:
        return self._has_status(key, self._statuses(settled=True, include_failed=include_failed))

    def frontier_index(self, *, include_failed: bool = False) -> KeyIndex:
        # every stored request (failed ones too); the confirmation checks the status
        return self._key_index(
            "FROM frontier", lambda key: self.is_pending(key, include_failed=include_failed)
        )

    def is_pending(self, key: bytes, *, include_failed: bool = False) -> bool:
        return self._has_status(key, self._statuses(settled=False, include_failed=include_failed))

    def _has_status(self, key: bytes, statuses: str) -> bool:
        query = f"SELECT 1 FROM requests WHERE key = ? AND status IN {statuses}"
        return self._db.execute(query, (key,)).fetchone() is not None

    def claim(self, key: bytes, url: str) -> bool:
        now = int(time.time())
        with self._transaction():
            seq = self._take_seq(1)
            return self._db.execute(ADD_PENDING, (key, seq, url, now, now)).rowcount == 1

    def iter_pending(
        self, batch_size: int = 1000, *, include_failed: bool = False
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        # the frontier as it is now: requests this run adds later are not restored
        with self._reading():
            (last,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM frontier").fetchone()
        return self._pending_batches(batch_size, include_failed, last)

    def _pending_batches(
        self, batch_size: int, include_failed: bool, last: int
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        statuses = self._statuses(settled=False, include_failed=include_failed)
        query = (
            "SELECT f.seq, f.key, f.request, r.url FROM frontier f JOIN requests r "
            f"ON r.key = f.key WHERE f.seq > ? AND f.seq <= ? AND r.status IN {statuses} "
            "ORDER BY f.seq LIMIT ?"
        )
        seq = 0
        while True:
            with self._reading():
                rows = self._db.execute(query, (seq, last, batch_size)).fetchall()
            if not rows:
                return
            seq = rows[-1][0]
            yield [
                (bytes(key), self.signer.verified(bytes(key), bytes(blob), url))
                for _, key, blob, url in rows
            ]

    def pending_keys(self) -> list[bytes]:
        statuses = self._statuses(settled=False, include_failed=False)
        query = f"SELECT key FROM requests WHERE status IN {statuses}"
        with self._reading():
            rows = self._db.execute(query).fetchall()
        return [bytes(key) for (key,) in rows]

    def cursors(self) -> dict[str, Any]:
        return {
            name: json.loads(value)
            for name, value in self._db.execute("SELECT name, value FROM cursors")
        }

    def feed_offsets(self) -> dict[str, int]:
        with self._reading():
            return dict(self._db.execute("SELECT path, committed_offset FROM feeds"))

    def feed_starts(self) -> dict[str, int]:
        with self._reading():
            if not self._has_table("feed_starts"):  # a stage created by an older version
                return {}
            return dict(self._db.execute("SELECT path, start_offset FROM feed_starts"))

    def state(self) -> dict[str, Any]:
        with self._reading():
            rows = self._db.execute("SELECT name, value FROM state").fetchall()
        return {name: json.loads(value) for name, value in rows}

    def _take_seq(self, count: int) -> int:
        """Reserve ``count`` discovery numbers (inside the commit's transaction). The
        stage lock makes this the only writer, so the counter is read only once."""
        if self._next_seq is None:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'next_seq'").fetchone()
            self._next_seq = int(row[0]) if row else 1
        first = self._next_seq
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('next_seq', ?)", (first + count,)
        )
        self._next_seq = first + count
        return first

    def commit(self, batch: CommitBatch) -> None:
        try:
            self._commit(batch)
        except BaseException:
            self._next_seq = None  # rolled back: read the counter again
            raise

    def _commit(self, batch: CommitBatch) -> None:
        now = int(time.time())
        with self._transaction():
            seq = self._take_seq(len(batch.new_requests) + len(batch.settlements))
            pending, discovered_url = batch.requests_to_write()
            new_rows = []
            for r in pending:
                new_rows.append((r.key, seq, r.url, r.blob))
                seq += 1
            added = self._db.executemany(
                ADD_PENDING, [(k, n, u, now, now) for k, n, u, _ in new_rows]
            ).rowcount
            # usually every key was new: then no need to check which rows went in
            self._db.executemany(
                "INSERT INTO frontier (seq, key, request) VALUES (?, ?, ?)"
                if added == len(new_rows) else ADD_TO_FRONTIER,
                [(n, k, self.signer.sign(k, b)) for k, n, _, b in new_rows if b is not None],
            )
            settled = []
            for s in batch.settlements:
                info = None if s.info is None else json.dumps(s.info, default=str)
                url = discovered_url.get(s.key, s.url)
                settled.append((
                    s.key, seq, int(s.status), url, s.http_status, s.error, s.attempts, now, now,
                    info,
                ))
                seq += 1
            self._db.executemany(SETTLE, settled)
            failed = [s for s in batch.settlements if s.status == RequestStatus.FAILED]
            # (one discovered in this batch never entered the frontier)
            self._db.executemany(
                LEAVE_FRONTIER,
                [
                    (s.key,) for s in batch.settlements
                    if s.status != RequestStatus.FAILED and s.key not in discovered_url
                ],
            )
            self._db.executemany(
                KEEP_FAILED,
                [(s.key, self.signer.sign(s.key, s.blob)) for s in failed if s.blob is not None],
            )
            self._write_the_rest(batch)
            self._set_meta("updated_at", repr(time.time()))

    def _write_the_rest(self, batch: CommitBatch) -> None:
        """A batch's cursors, counters, feed offsets, state and progress sample."""
        self._db.executemany(
            "INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)",
            [(name, json.dumps(value)) for name, value in batch.cursors.items()],
        )
        self._add_counters(batch.counters)
        self._db.executemany(
            "INSERT OR REPLACE INTO feeds (path, committed_offset) VALUES (?, ?)",
            list(batch.feed_offsets.items()),
        )
        if batch.feed_starts:
            self._db.execute(FEED_STARTS_TABLE)
            self._db.executemany(
                "INSERT OR REPLACE INTO feed_starts (path, start_offset) VALUES (?, ?)",
                list(batch.feed_starts.items()),
            )
        self._write_state(batch.state)
        if batch.progress:
            self._db.execute(PROGRESS_TABLE)
            self._db.execute(SAMPLE_PROGRESS, (time.time(),))

    def _write_state(self, state: dict[str, Any]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
            [(name, json.dumps(value)) for name, value in state.items()],
        )

    def _add_counters(self, deltas: dict[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            [(name, delta) for name, delta in deltas.items() if delta],
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
