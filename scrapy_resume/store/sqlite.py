"""The embedded default backend: one SQLite file per stage, in WAL mode.

This is the only module that speaks SQL.
"""

from __future__ import annotations

import errno
import fcntl
import glob
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

from scrapy_resume.store.base import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    CommitBatch,
    KeyIndex,
    RequestStatus,
    StageStatus,
    StageSummary,
    backup_name,
    statuses,
)
from scrapy_resume.store.privatefiles import (
    create_private_file,
    fsync_directory,
    open_private,
    private_directory,
    refuse_symlink,
)
from scrapy_resume.store.signing import RequestSigner

SCHEMA_VERSION = 2

#: SQLite's files beside a stage's, in WAL mode.
COMPANIONS = ("-wal", "-shm")


class StageLock:
    """An exclusive lock on one stage, held while a crawl has it open.

    It is a kernel lock (flock) on ``STAGE.sqlite.lock``: the kernel releases it
    when its process dies, however it dies, so a killed run never blocks the next.
    """

    def __init__(self, stage_path: Path):
        self.path = Path(f"{stage_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        private_directory(self.path.parent)
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse_symlink(self.path)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise CheckpointLocked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def held_by_another(self) -> str | None:
        """The pid of the process holding the stage, or None if nobody does."""
        if not self.path.exists():
            return None
        try:
            self.acquire()
        except CheckpointLocked as exc:
            return exc.pid or "?"
        self.release()
        return None


# The ledger keeps one small row per request, keyed by the request key
# (WITHOUT ROWID: the key is stored once, as the primary key, not again in a
# UNIQUE index), about 58 bytes beyond the URL. A pending or failed request's
# serialized form, the bulky part, sits in ``frontier`` until it is done, so
# done rows never carry it and freed frontier pages are reused.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)
""",
    """
CREATE TABLE IF NOT EXISTS requests (
    key BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    status INTEGER NOT NULL,
    url TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    info TEXT
) WITHOUT ROWID
""",
    """
CREATE TABLE IF NOT EXISTS frontier (
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    request BLOB NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS status_counts (status INTEGER PRIMARY KEY, n INTEGER NOT NULL)
""",
    """
INSERT OR IGNORE INTO status_counts (status, n) VALUES (0, 0), (1, 0), (2, 0), (3, 0)
""",
    """
CREATE TRIGGER IF NOT EXISTS requests_counted_insert AFTER INSERT ON requests BEGIN
    UPDATE status_counts SET n = n + 1 WHERE status = new.status;
END
""",
    """
CREATE TRIGGER IF NOT EXISTS requests_counted_update AFTER UPDATE OF status ON requests
WHEN old.status != new.status BEGIN
    UPDATE status_counts SET n = n - 1 WHERE status = old.status;
    UPDATE status_counts SET n = n + 1 WHERE status = new.status;
END
""",
    """
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL)
""",
    """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
""",
    """
CREATE TABLE IF NOT EXISTS feeds (path TEXT PRIMARY KEY, committed_offset INTEGER NOT NULL)
""",
    """
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)
""",
    """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    mode TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    close_reason TEXT
)
""",
)

_ADD_PENDING = """
INSERT OR IGNORE INTO requests (key, seq, status, url, attempts, created_at, updated_at)
VALUES (?, ?, 0, ?, 0, ?, ?)
"""
# only for the rows the statement above inserted (when it ignored some): a
# known key keeps its state
_ADD_TO_FRONTIER = """
INSERT INTO frontier (seq, key, request)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM requests WHERE key = ?2 AND seq = ?1)
"""

_SETTLE = """
INSERT INTO requests (key, seq, status, url, http_status, error, attempts, created_at,
                      updated_at, info)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    status = excluded.status,
    http_status = excluded.http_status,
    error = excluded.error,
    attempts = requests.attempts + excluded.attempts,
    updated_at = excluded.updated_at,
    info = excluded.info
"""
# a done or dropped request leaves the frontier; a failed one stays, to be retried
_LEAVE_FRONTIER = "DELETE FROM frontier WHERE seq = (SELECT seq FROM requests WHERE key = ?)"
_KEEP_FAILED = """
INSERT OR REPLACE INTO frontier (seq, key, request)
SELECT seq, key, ?2 FROM requests WHERE key = ?1
"""

class CheckpointStore(BaseCheckpointStore):
    """The embedded default: one SQLite file per stage, in WAL mode.

    WAL with ``synchronous=NORMAL`` survives the death of the process;
    ``fsync=True`` switches to ``FULL`` for power-loss safety.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False):
        self.path = Path(path)
        private_directory(self.path.parent)
        refuse_symlink(self.path)
        self.signer = RequestSigner(self.path.parent)  # a checkpoint holds pickles: signed
        self._next_seq: int | None = None  # the next discovery number, once read
        fresh = not self.path.exists()
        if fresh:
            os.close(create_private_file(self.path))  # 0600 from the start, not after
        try:
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

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        return Path(path).exists()

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], stage: str, spider: str, state: dict[str, Any],
        *, fsync: bool = False,
    ) -> CheckpointStore:
        """Create a stage whole, its configuration included.

        It is built under a temporary name and renamed into place, then the
        directory is fsynced: a kill at any step leaves either no stage (the
        next run starts fresh) or a complete one, never a half-made file that
        every later resume would refuse. Call it with the stage locked.
        """
        path = Path(path)
        private_directory(path.parent)
        for leftover in (Path(f"{path}{suffix}") for suffix in COMPANIONS):
            # orphans of a stage moved aside half-way by an older version: SQLite
            # would take them for the new stage's journal
            leftover.unlink(missing_ok=True)
        for leftover in path.parent.glob(f"{glob.escape(path.name)}.new-*"):
            leftover.unlink()  # a creation that was killed
        temp = path.with_name(f"{path.name}.new-{os.getpid()}")
        store = cls(temp, fsync=fsync)
        try:
            store.initialize(stage, spider, state)
            # one file to rename: no WAL beside it
            store._db.execute("PRAGMA journal_mode=DELETE")
        finally:
            store.close()
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
        fsync_directory(path.parent)
        return cls(path, fsync=fsync)

    @classmethod
    def move_aside(cls, path: str | os.PathLike[str]) -> Path:
        """Rename a stage to a timestamped backup, as one file, and return the new path.

        Its WAL is folded into the main file first, so the rename moves the whole
        stage at once: a kill at any step leaves either the old stage or a
        complete backup and no stage. Call it with the stage locked.
        """
        path = Path(path)
        backup = Path(backup_name(str(path), os.path.exists))
        folded = cls._fold_wal(path)
        path.rename(backup)
        if not folded:  # a damaged file: its companions go along, after it
            for suffix in COMPANIONS:
                companion = Path(f"{path}{suffix}")
                if companion.exists():
                    companion.rename(f"{backup}{suffix}")
        fsync_directory(path.parent)
        return backup

    @staticmethod
    def _fold_wal(path: Path) -> bool:
        """Copy the WAL into the main file and remove it; False if the file is unreadable."""
        if not any(Path(f"{path}{suffix}").exists() for suffix in COMPANIONS):
            return True
        try:
            db = sqlite3.connect(path, isolation_level=None)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")  # removes the WAL
            finally:
                db.close()
        except sqlite3.OperationalError:
            raise  # a full disk, an I/O error: no reset now, the stage stays as it is
        except sqlite3.DatabaseError:
            return False  # not a database any more: moved aside as it is
        return not any(Path(f"{path}{suffix}").exists() for suffix in COMPANIONS)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A read that fails on a damaged file means a corrupt checkpoint."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise CheckpointCorrupt(f"{self.path} is damaged: {exc}") from exc

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
            for statement in _SCHEMA:
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
            return self._db.execute(_ADD_PENDING, (key, seq, url, now, now)).rowcount == 1

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

    def ledger_rows(
        self, status: RequestStatus | None = None, *, newest_first: bool = False, limit: int = -1
    ) -> Iterator[dict[str, Any]]:
        columns = (
            "url", "status", "http_status", "error", "attempts", "created_at", "updated_at", "info"
        )
        where = "" if status is None else f"WHERE status = {int(status)}"
        order = "updated_at DESC, seq DESC" if newest_first else "seq"
        query = f"SELECT {', '.join(columns)} FROM requests {where} ORDER BY {order} LIMIT ?"
        for row in self._db.execute(query, (limit,)):
            record = dict(zip(columns, row))
            record["status"] = RequestStatus(record["status"]).name.lower()
            record["info"] = None if record["info"] is None else json.loads(record["info"])
            yield record

    def runs(self) -> list[dict[str, Any]]:
        columns = ("mode", "started_at", "ended_at", "close_reason")
        query = f"SELECT {', '.join(columns)} FROM runs ORDER BY id"
        return [dict(zip(columns, row)) for row in self._db.execute(query)]

    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]:
        """Every request of the stage as ``(key, status, url)``, in discovery order."""
        query = "SELECT key, status, url FROM requests ORDER BY seq"
        for key, status, url in self._db.execute(query):
            yield bytes(key), RequestStatus(status), url

    def cursors(self) -> dict[str, Any]:
        return {
            name: json.loads(value)
            for name, value in self._db.execute("SELECT name, value FROM cursors")
        }

    def feed_offsets(self) -> dict[str, int]:
        with self._reading():
            return dict(self._db.execute("SELECT path, committed_offset FROM feeds"))

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
                _ADD_PENDING, [(k, n, u, now, now) for k, n, u, _ in new_rows]
            ).rowcount
            # usually every key was new: then no need to check which rows went in
            self._db.executemany(
                "INSERT INTO frontier (seq, key, request) VALUES (?, ?, ?)"
                if added == len(new_rows) else _ADD_TO_FRONTIER,
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
            self._db.executemany(_SETTLE, settled)
            failed = [s for s in batch.settlements if s.status == RequestStatus.FAILED]
            # (one discovered in this batch never entered the frontier)
            self._db.executemany(
                _LEAVE_FRONTIER,
                [
                    (s.key,) for s in batch.settlements
                    if s.status != RequestStatus.FAILED and s.key not in discovered_url
                ],
            )
            self._db.executemany(
                _KEEP_FAILED,
                [(s.key, self.signer.sign(s.key, s.blob)) for s in failed if s.blob is not None],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)",
                [(name, json.dumps(value)) for name, value in batch.cursors.items()],
            )
            self._add_counters(batch.counters)
            self._db.executemany(
                "INSERT OR REPLACE INTO feeds (path, committed_offset) VALUES (?, ?)",
                list(batch.feed_offsets.items()),
            )
            self._write_state(batch.state)
            self._set_meta("updated_at", repr(time.time()))

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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
