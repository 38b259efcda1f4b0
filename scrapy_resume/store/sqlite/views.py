"""StageViews: what the commands read from a stage file, row by row (the ledger,
the runs, the progress samples), beside the store's own reads."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scrapy_resume.store.base import CheckpointCorrupt
from scrapy_resume.store.records import RequestStatus
from scrapy_resume.store.signing import RequestSigner, signature_problems


class StageViews:
    _db: sqlite3.Connection
    path: Path
    signer: RequestSigner

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A read that fails on a damaged file means a corrupt checkpoint."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise CheckpointCorrupt(f"{self.path} is damaged: {exc}") from exc

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
        return self._rows("runs", ("mode", "started_at", "ended_at", "close_reason"))

    def _rows(self, table: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"
        return [dict(zip(columns, row)) for row in self._db.execute(query)]

    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]:
        """Every request of the stage as ``(key, status, url)``, in discovery order."""
        query = "SELECT key, status, url FROM requests ORDER BY seq"
        for key, status, url in self._db.execute(query):
            yield bytes(key), RequestStatus(status), url

    def progress(self) -> list[dict[str, Any]]:
        columns = ("at", "run", "done", "failed", "dropped", "pending", "items")
        with self._reading():  # (none in a stage created by an older version)
            return self._rows("progress", columns) if self._has_table("progress") else []

    def _has_table(self, name: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone() is not None


    def check(self) -> list[str]:
        """What is wrong with the stage file (read only): SQLite's integrity_check,
        the status counts the triggers keep against the ledger, and every stored
        request's signature."""
        with self._reading():
            integrity = [row[0] for row in self._db.execute("PRAGMA integrity_check(20)")]
            problems = [] if integrity == ["ok"] else [
                f"SQLite integrity_check: {'; '.join(integrity)}"
            ]
            kept = dict(self._db.execute("SELECT status, n FROM status_counts"))
            counted = dict(self._db.execute(
                "SELECT status, count(*) FROM requests GROUP BY status"
            ))
            for status in RequestStatus:
                if kept.get(status, 0) != counted.get(status, 0):
                    problems.append(
                        f"{status.name.lower()} requests: counted {kept.get(status, 0):,}, "
                        f"but the ledger holds {counted.get(status, 0):,}"
                    )
            stored = self._db.execute(
                "SELECT f.key, f.request, coalesce(r.url, '?') FROM frontier AS f "
                "LEFT JOIN requests AS r ON r.key = f.key"
            )
            problems += signature_problems(
                self.signer, ((bytes(k), bytes(b), url) for k, b, url in stored)
            )
        return problems
