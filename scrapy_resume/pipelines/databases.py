"""The databases the SQL pipeline writes into: SQLite (the standard library's
sqlite3) and PostgreSQL (psycopg 3, the ``postgres`` extra).

Every write is one short transaction: a batch of upserts on (stage, item_id).
No transaction stays open between two writes. The calls block: the pipeline
makes them in a worker thread, one at a time.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scrapy_resume.config import CheckpointConfigError

# item_id, stage, url, item (JSON), written at (ISO 8601, UTC)
Row = tuple[str, str, str, str, str]

TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
COLUMNS = "stage, item_id, url, item, created_at, updated_at"


def check_table_name(name: str, setting: str = "CHECKPOINT_ITEMS_TABLE") -> str:
    if not TABLE_NAME.match(name):
        raise CheckpointConfigError(
            f"{setting}={name!r} cannot be used as a table name: use letters, digits, '_', "
            f"'-' and '.' (at most 63 characters)."
        )
    return name


class ItemsDatabase:
    """One database connection, and the table the items go into."""

    def __init__(self, url: str):
        self.url = url
        self.table = ""

    def open(self, table: str, durable: bool) -> None:
        raise NotImplementedError

    def write(self, rows: list[Row]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def quoted_table(self) -> str:
        return f'"{self.table}"'  # (the name has no double quote: check_table_name)

    def upsert(self, placeholder: str) -> str:
        """The statement that writes a row, or replaces the one with its item id."""
        values = ", ".join([placeholder] * 6)
        return (
            f"INSERT INTO {self.quoted_table()} ({COLUMNS}) VALUES ({values}) "
            f"ON CONFLICT (stage, item_id) DO UPDATE SET url = excluded.url, "
            f"item = excluded.item, updated_at = excluded.updated_at"
        )


class SQLiteItems(ItemsDatabase):
    def __init__(self, url: str, path: Path):
        super().__init__(url)
        self.path = path
        self.connection: sqlite3.Connection | None = None

    def open(self, table: str, durable: bool) -> None:
        self.table = table
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # (used from one worker thread at a time, not always the same one)
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=5,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives the death of the process, FULL a power cut (CHECKPOINT_FSYNC)
        connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.quoted_table()} (stage TEXT NOT NULL, "
            f"item_id TEXT NOT NULL, url TEXT NOT NULL, item TEXT NOT NULL, "
            f"created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (stage, item_id))"
        )
        self.connection = connection

    def write(self, rows: list[Row]) -> None:
        if self.connection is None:
            raise RuntimeError(f"the items database {self.url} is closed")
        upsert = self.upsert("?")
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(upsert, [(s, i, u, j, t, t) for i, s, u, j, t in rows])
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class PostgresItems(ItemsDatabase):
    def __init__(self, url: str):
        super().__init__(url)
        self.connection: Any = None

    def open(self, table: str, durable: bool) -> None:
        import psycopg

        self.table = table
        # autocommit: each write opens its own short transaction (below), none
        # stays open between two of them
        self.connection = psycopg.connect(self.url, autocommit=True)
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.quoted_table()} (stage TEXT NOT NULL, "
            f"item_id TEXT NOT NULL, url TEXT NOT NULL, item JSONB NOT NULL, "
            f"created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, "
            f"PRIMARY KEY (stage, item_id))"
        )

    def write(self, rows: list[Row]) -> None:
        if self.connection is None:
            raise RuntimeError(f"the items database {safe_url(self.url)} is closed")
        upsert = self.upsert("%s")
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(upsert, [(s, i, u, j, t, t) for i, s, u, j, t in rows])

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def items_database(url: str) -> ItemsDatabase:
    """The database CHECKPOINT_ITEMS_DB names, or a clear error."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise CheckpointConfigError(
                "CHECKPOINT_ITEMS_DB=sqlite:/// names no file: use sqlite:///items.db "
                "(relative) or sqlite:////absolute/path/items.db."
            )
        return SQLiteItems(url, Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise CheckpointConfigError(
                "CHECKPOINT_ITEMS_DB names a PostgreSQL database, but psycopg is not "
                "installed: pip install 'scrapy-resume[postgres]'."
            ) from None
        return PostgresItems(url)
    raise CheckpointConfigError(
        f"CHECKPOINT_ITEMS_DB={safe_url(url)!r} is not a database the SQL pipeline can write "
        f"to: use sqlite:///path/items.db or postgresql://user@host:port/dbname."
    )
