"""The tables of a stage file, and the statements a commit runs."""

from __future__ import annotations

SCHEMA_VERSION = 2

#: SQLite's files beside a stage's, in WAL mode.
COMPANIONS = ("-wal", "-shm")


# The ledger keeps one small row per request, keyed by the request key
# (WITHOUT ROWID: the key is stored once, as the primary key, not again in a
# UNIQUE index), about 58 bytes beyond the URL. A pending or failed request's
# serialized form, the bulky part, sits in ``frontier`` until it is done, so
# done rows never carry it and freed frontier pages are reused.
# added after layout 2 was released: a stage created before it gets the table at
# its first commit that needs it
FEED_STARTS_TABLE = """
CREATE TABLE IF NOT EXISTS feed_starts (path TEXT PRIMARY KEY, start_offset INTEGER NOT NULL)
"""

# also added after layout 2: one row every few seconds of a run (the HTML report's
# charts: progress over time, across runs, a killed run's included)
PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS progress (
    at REAL NOT NULL, run INTEGER, done INTEGER NOT NULL, failed INTEGER NOT NULL,
    dropped INTEGER NOT NULL, pending INTEGER NOT NULL, items INTEGER NOT NULL
)
"""

# the counts as this transaction leaves them: status_counts (kept by triggers), the items counter
SAMPLE_PROGRESS = """
INSERT INTO progress (at, run, done, failed, dropped, pending, items) SELECT ?,
    (SELECT max(id) FROM runs),
    (SELECT n FROM status_counts WHERE status = 1), (SELECT n FROM status_counts WHERE status = 2),
    (SELECT n FROM status_counts WHERE status = 3), (SELECT n FROM status_counts WHERE status = 0),
    coalesce((SELECT value FROM counters WHERE name = 'items'), 0)
"""

SCHEMA = (
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
    FEED_STARTS_TABLE,
    PROGRESS_TABLE,
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


ADD_PENDING = """
INSERT OR IGNORE INTO requests (key, seq, status, url, attempts, created_at, updated_at)
VALUES (?, ?, 0, ?, 0, ?, ?)
"""


# only for the rows the statement above inserted (when it ignored some): a
# known key keeps its state
ADD_TO_FRONTIER = """
INSERT INTO frontier (seq, key, request)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM requests WHERE key = ?2 AND seq = ?1)
"""


SETTLE = """
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
LEAVE_FRONTIER = "DELETE FROM frontier WHERE seq = (SELECT seq FROM requests WHERE key = ?)"


KEEP_FAILED = """
INSERT OR REPLACE INTO frontier (seq, key, request)
SELECT seq, key, ?2 FROM requests WHERE key = ?1
"""
