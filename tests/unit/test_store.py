"""CheckpointStore on its own: atomic batches, ledger semantics, files on disk."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scrapy_resume import CheckpointCorrupt, CheckpointStore, CheckpointTampered, RequestStatus
from scrapy_resume.store.records import CommitBatch, NewRequest, Settlement
from scrapy_resume.store.redis.backend import RedisBackend
from scrapy_resume.store.redis.store import RedisStore
from scrapy_resume.store.sqlite.backend import SqliteBackend
from scrapy_resume.store.sqlite.files import move_aside
from tests.crawling import REPO


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """The ledger tests run against both backends: components never know which."""
    if request.param == "sqlite":
        backend = SqliteBackend(tmp_path / "ckpt")
    else:
        backend = RedisBackend(request.getfixturevalue("redis_server").url(), tmp_path / "ckpt")
    stage = f"stage-{uuid.uuid4().hex[:8]}"
    store = backend.open(stage)
    store.initialize(stage, "spider")
    yield store
    store.close()
    backend.remove(stage)
    backend.close()


@pytest.fixture
def sqlite_store(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt" / "stage.sqlite")
    store.initialize("stage", "spider")
    yield store
    store.close()


def frontier_keys(store: CheckpointStore) -> list[bytes]:
    return [key for batch in store.iter_pending() for key, _ in batch]


def stored_requests(store) -> dict[bytes, bytes]:
    """The signed serialized requests a store keeps, read behind its back."""
    if isinstance(store, RedisStore):
        return store.client.hgetall(store.keys.blobs)
    with sqlite3.connect(store.path) as db:
        return {bytes(k): bytes(v) for k, v in db.execute("SELECT key, request FROM frontier")}


def pending(key: bytes) -> NewRequest:
    return NewRequest(key, f"http://x/{key.decode()}", b"blob-" + key)


def test_a_batch_is_all_or_nothing(store):
    store.commit(CommitBatch(new_requests=[pending(b"a")]))
    bad = CommitBatch(
        new_requests=[pending(b"b")],
        settlements=[Settlement(b"a", RequestStatus.DONE, "http://x/a")],
        cursors={"page": object()},  # not JSON: the transaction fails half-way
    )
    with pytest.raises(TypeError):
        store.commit(bad)
    assert {k: s for k, s, _ in store.ledger()} == {b"a": RequestStatus.PENDING}
    assert store.cursors() == {}


def test_settled_requests_are_never_turned_back_to_pending(store):
    store.commit(CommitBatch(settlements=[Settlement(b"a", RequestStatus.DONE, "http://x/a")]))
    store.commit(CommitBatch(new_requests=[pending(b"a"), pending(b"b")]))
    assert [(k, s) for k, s, _ in store.ledger()] == [
        (b"a", RequestStatus.DONE), (b"b", RequestStatus.PENDING)
    ]
    finished = store.finished_index()
    assert len(finished) == 1 and b"a" in finished and b"b" not in finished
    assert frontier_keys(store) == [b"b"]


def test_the_finished_index_is_exact_for_keys_sharing_a_prefix(store):
    done = [b"12345678-done", b"short", b"", b"\xff" * 20]
    store.commit(CommitBatch(
        new_requests=[pending(b"12345678-pending")],
        settlements=[Settlement(k, RequestStatus.DONE, "u") for k in done]
        + [Settlement(b"12345678-failed", RequestStatus.FAILED, "u", blob=b"x")],
    ))
    finished = store.finished_index()
    assert all(key in finished for key in done)
    assert b"12345678-pending" not in finished  # same 8-byte prefix, not settled
    assert b"12345678-failed" in finished and b"shorter" not in finished
    being_retried = store.finished_index(include_failed=False)
    assert b"12345678-failed" not in being_retried and b"12345678-done" in being_retried


def test_failed_requests_keep_their_serialized_request(store, tmp_path):
    store.commit(CommitBatch(new_requests=[pending(b"a"), pending(b"b")]))
    store.commit(CommitBatch(settlements=[
        Settlement(b"a", RequestStatus.FAILED, "http://x/a", error="TimeoutError: boom"),
        Settlement(b"b", RequestStatus.DONE, "http://x/b", http_status=200),
    ]))
    rows = stored_requests(store)
    assert b"b" not in rows  # done requests leave the frontier, with their blob
    assert rows[b"a"][32:] == b"blob-a"  # failed ones keep it, after its 32-byte signature
    failed = [key for batch in store.iter_pending(include_failed=True) for key, _ in batch]
    assert failed == [b"a"] and list(store.iter_pending()) == []


def test_pending_streams_in_discovery_order_and_in_batches(store):
    keys = [f"k{i:03}".encode() for i in range(25)]
    store.commit(CommitBatch(new_requests=[pending(k) for k in keys]))
    store.commit(CommitBatch(settlements=[Settlement(keys[3], RequestStatus.DONE, "u")]))
    batches = list(store.iter_pending(batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 4]
    assert [key for batch in batches for key, _ in batch] == keys[:3] + keys[4:]


def test_a_request_found_and_finished_in_one_batch_is_written_once(store, tmp_path):
    store.commit(CommitBatch(
        new_requests=[pending(b"a"), pending(b"b"), pending(b"c")],
        settlements=[
            Settlement(b"a", RequestStatus.DONE, "http://x/redirected", http_status=200),
            Settlement(b"b", RequestStatus.FAILED, "http://x/b", error="E", blob=b"retry-b"),
        ],
    ))
    assert [(k, s) for k, s, _ in store.ledger()] == [
        (b"b", RequestStatus.FAILED), (b"c", RequestStatus.PENDING), (b"a", RequestStatus.DONE)
    ]
    assert [row["url"] for row in store.ledger_rows()][-1] == "http://x/a"  # as discovered
    summary = store.summary()
    assert (summary.pending, summary.done, summary.failed) == (1, 1, 1)
    frontier = stored_requests(store)
    assert sorted(frontier) == [b"b", b"c"] and frontier[b"b"][32:] == b"retry-b"


def test_the_frontier_streams_as_it_was_when_asked_for(store):
    # a resume restores the earlier runs' frontier; what this run adds is its own
    store.commit(CommitBatch(new_requests=[pending(b"old1"), pending(b"old2")]))
    batches = store.iter_pending(batch_size=1)
    store.commit(CommitBatch(new_requests=[pending(b"new")]))
    assert [key for batch in batches for key, _ in batch] == [b"old1", b"old2"]


def test_counters_accumulate_and_summary_counts_statuses(store):
    store.begin_run("fresh")
    store.commit(CommitBatch(new_requests=[pending(b"a"), pending(b"b")], counters={"items": 3}))
    store.commit(CommitBatch(
        settlements=[Settlement(b"a", RequestStatus.DONE, "u")], counters={"items": 2, "done": 1}
    ))
    summary = store.summary()
    assert (summary.pending, summary.done, summary.failed, summary.total) == (1, 1, 0, 2)
    assert summary.counters == {"runs": 1, "items": 5, "done": 1}
    assert "1 done, 1 pending" in summary.describe()
    # status counts follow every transition, including a failure retried into done
    store.commit(CommitBatch(settlements=[
        Settlement(b"b", RequestStatus.FAILED, "u", blob=b"x"),
        Settlement(b"c", RequestStatus.DROPPED, "u"),
    ]))
    store.commit(CommitBatch(new_requests=[pending(k) for k in (b"a", b"b", b"c")]))  # known
    assert [key for batch in store.iter_pending(include_failed=True) for key, _ in batch] == [b"b"]
    summary = store.summary()
    assert (summary.pending, summary.done, summary.failed, summary.dropped) == (0, 1, 1, 1)
    store.commit(CommitBatch(settlements=[Settlement(b"b", RequestStatus.DONE, "u")]))
    summary = store.summary()
    assert (summary.pending, summary.done, summary.failed, summary.dropped) == (0, 2, 0, 1)


def test_files_are_private(tmp_path, sqlite_store):
    path = tmp_path / "ckpt" / "stage.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_wrong_schema_version_is_corrupt_and_untouched(tmp_path, sqlite_store):
    path = tmp_path / "ckpt" / "stage.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(CheckpointCorrupt, match="schema_version 99"):
        CheckpointStore(path)
    assert path.read_bytes() == before


def test_move_aside_folds_the_wal_into_the_backup(tmp_path):
    path = tmp_path / "stage.sqlite"
    # a process dies with its last commit still in the WAL: no close, no checkpoint
    script = (
        "import os, sys; from scrapy_resume import CheckpointStore; "
        "from scrapy_resume.store.records import CommitBatch, NewRequest; "
        f"store = CheckpointStore({str(path)!r}); store.initialize('stage', 'spider'); "
        "store.commit(CommitBatch(new_requests=[NewRequest(b'a', 'http://x/a', b'blob')])); "
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)
    assert Path(f"{path}-wal").stat().st_size > 0
    backup = move_aside(path)
    assert not path.exists() and backup.exists()
    # one file: the backup holds the commit, with no WAL beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.secret", backup.name]
    reopened = CheckpointStore(backup)
    assert frontier_keys(reopened) == [b"a"]
    reopened.close()


def test_a_forged_request_is_refused_before_it_is_unpickled(sqlite_store, tmp_path):
    sqlite_store.commit(CommitBatch(new_requests=[pending(b"a"), pending(b"b")]))
    with sqlite3.connect(tmp_path / "ckpt" / "stage.sqlite") as db:
        signed = db.execute("SELECT request FROM frontier WHERE key = ?", (b"a",)).fetchone()[0]
        db.execute("UPDATE frontier SET request = ? WHERE key = ?", (signed[:32] + b"evil", b"a"))
    with pytest.raises(CheckpointTampered, match="http://x/a"):
        list(sqlite_store.iter_pending())
    # a blob signed for another key cannot be swapped in either
    with sqlite3.connect(tmp_path / "ckpt" / "stage.sqlite") as db:
        other = db.execute("SELECT request FROM frontier WHERE key = ?", (b"b",)).fetchone()[0]
        db.execute("UPDATE frontier SET request = ? WHERE key = ?", (other, b"a"))
    with pytest.raises(CheckpointTampered):
        list(sqlite_store.iter_pending())


def test_the_signing_secret_is_private_and_shared_by_the_stages(tmp_path, sqlite_store):
    secret = tmp_path / "ckpt" / "checkpoint.secret"
    assert not secret.exists()  # made when a first request is signed
    sqlite_store.commit(CommitBatch(new_requests=[pending(b"a")]))
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_bytes()) == 32
    other = CheckpointStore(tmp_path / "ckpt" / "other.sqlite")
    assert secret.read_bytes() == other.signer.secret
    other.close()


def test_attempts_add_up_across_runs(store):
    store.commit(CommitBatch(settlements=[
        Settlement(b"a", RequestStatus.FAILED, "http://x/a", error="E", attempts=3)
    ]))
    store.commit(CommitBatch(settlements=[
        Settlement(b"a", RequestStatus.DONE, "http://x/a", http_status=200, attempts=1)
    ]))
    [row] = store.ledger_rows()
    assert (row["status"], row["attempts"], row["http_status"], row["error"]) == (
        "done", 4, 200, None
    )
    assert row["created_at"] <= row["updated_at"]


def test_a_damaged_file_is_corrupt(tmp_path):
    path = tmp_path / "stage.sqlite"
    store = CheckpointStore(path)
    store.initialize("stage", "spider")
    store.commit(CommitBatch(new_requests=[pending(f"k{i}".encode()) for i in range(3000)]))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorrupt):
        CheckpointStore(path).summary()


# Records exactly as scrapy-resume's Redis layout 1 wrote them (captured from
# version e22664f): a done request, a failed one with its error and info, a pending one.
LAYOUT_1_RECORDS = {
    b"a": b'[1,"http:\\/\\/x\\/a",200,false,1,1796188304,1796188304,false]',
    b"b": b'[2,"http:\\/\\/x\\/b",503,"HttpError 503",2,1796188304,1796188304,'
          b'"{\\"why\\": \\"x\\"}"]',
    b"c": b'[3,"http:\\/\\/x\\/c",false,false,0,1796188304,1796188304,false]',
}


@pytest.fixture
def layout_1_stage(tmp_path, redis_server):
    """A Redis stage as layout 1 left it: its records are JSON arrays."""
    backend = RedisBackend(redis_server.url(), tmp_path / "ckpt")
    stage = f"stage-{uuid.uuid4().hex[:8]}"
    store = backend.open(stage)
    store.initialize(stage, "spider")
    store.commit(CommitBatch(new_requests=[pending(b"a"), pending(b"b"), pending(b"c")]))
    store.commit(CommitBatch(settlements=[
        Settlement(b"a", RequestStatus.DONE, "http://x/a", http_status=200, attempts=1),
        Settlement(b"b", RequestStatus.FAILED, "http://x/b", blob=b"blob-b", attempts=2),
    ]))
    store.client.hset(store.keys.record, mapping=LAYOUT_1_RECORDS)
    store.client.hset(store.keys.meta, "schema_version", 1)
    store.close()
    yield backend, stage
    backend.remove(stage)
    backend.close()


def test_a_redis_stage_of_layout_1_is_read_and_converted_as_it_is_written(layout_1_stage):
    backend, stage = layout_1_stage
    store = backend.open(stage)
    assert [(r["url"], r["status"], r["http_status"], r["error"], r["attempts"], r["info"])
            for r in store.ledger_rows()] == [
        ("http://x/a", "done", 200, None, 1, None),
        ("http://x/b", "failed", 503, "HttpError 503", 2, {"why": "x"}),
        ("http://x/c", "pending", None, None, 0, None),
    ]
    assert [key for key, _ in next(store.iter_pending(include_failed=True))] == [b"b", b"c"]
    store.commit(CommitBatch(settlements=[
        Settlement(b"b", RequestStatus.DONE, "http://x/b", http_status=200, attempts=1),
        Settlement(b"c", RequestStatus.DONE, "http://x/c", http_status=200, attempts=1),
    ]))
    rows = {r["url"]: r for r in store.ledger_rows()}
    assert [(r["status"], r["attempts"], r["http_status"], r["error"]) for r in rows.values()] == [
        ("done", 1, 200, None), ("done", 3, 200, None), ("done", 1, 200, None),
    ]
    assert rows["http://x/b"]["created_at"] == 1796188304  # kept from the old record
    raw = store.client.hgetall(store.keys.record)
    assert raw[b"a"] == LAYOUT_1_RECORDS[b"a"]  # not rewritten: still read as it is
    assert json.loads(raw[b"c"]) == {
        "seq": 3, "url": "http://x/c", "http_status": 200, "attempts": 1,
        "created_at": 1796188304, "updated_at": json.loads(raw[b"c"])["updated_at"],
    }
    # written by this version: a version that reads only layout 1 refuses it
    assert store.client.hget(store.keys.meta, "schema_version") == b"2"
    assert store.summary().done == 3
    store.close()


def test_a_redis_stage_of_a_newer_layout_is_corrupt_and_untouched(layout_1_stage):
    backend, stage = layout_1_stage
    client = backend.client
    client.hset(f"scrapy_resume:{stage}:meta", "schema_version", 3)
    before = {key: client.dump(key) for key in client.keys(f"scrapy_resume:{stage}:*")}
    with pytest.raises(CheckpointCorrupt, match="layout version 3.*reads 1 and 2"):
        backend.open(stage)
    assert {key: client.dump(key) for key in client.keys(f"scrapy_resume:{stage}:*")} == before


def test_feed_starts_are_committed_with_the_batch(store):
    assert store.feed_starts() == {}
    store.commit(CommitBatch(feed_offsets={"items.json": 120}, feed_starts={"items.json": 120}))
    store.commit(CommitBatch(feed_offsets={"items.json": 900}))
    assert (store.feed_offsets(), store.feed_starts()) == (
        {"items.json": 900}, {"items.json": 120}
    )


def test_a_sqlite_stage_without_the_feed_starts_table_gets_it_when_needed(tmp_path, sqlite_store):
    path = tmp_path / "ckpt" / "stage.sqlite"
    with sqlite3.connect(path) as db:  # as a stage created before the table existed
        db.execute("DROP TABLE feed_starts")
    assert sqlite_store.feed_starts() == {}
    sqlite_store.commit(CommitBatch(feed_offsets={"a.csv": 0}, feed_starts={"a.csv": 0}))
    assert sqlite_store.feed_starts() == {"a.csv": 0}
