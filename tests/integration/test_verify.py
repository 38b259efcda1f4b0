"""`scrapy checkpoint verify`: exit 0 on a healthy stage, exit 1 naming each kind
of damage, and never a byte changed. Stages made by real crawls."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3

import pytest
import redis

from tests.crawling import Crawl, graph_crawl, kill_after, scrapy_checkpoint


@pytest.fixture(scope="module")
def paused_stage(tmp_path_factory, mockserver):
    """A stage paused by SIGTERM mid-crawl: a pending frontier (signed blobs), a
    committed feed, one file (a clean close leaves no WAL)."""
    workdir = tmp_path_factory.mktemp("verify")
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=50)
    crawl = Crawl(workdir, "graph", args={"start": mockserver.url(f"{ns}/g/400/3/0")},
                  feed="out.jsonl")
    proc = crawl.start()
    mockserver.arm(ns, proc.pid, signal="TERM", at=60)
    assert crawl.finish(proc).finish_reason == "shutdown"
    return workdir


def copy_of(paused_stage, tmp_path):
    shutil.copytree(paused_stage, tmp_path / "w")
    return tmp_path / "w"


def verify(workdir, *args):
    return scrapy_checkpoint("verify", *args, "--dir", str(workdir / "checkpoints"),
                             cwd=workdir)


def fingerprint(workdir) -> dict[str, str]:
    """Every file's digest but the logs and SQLite's -shm: the WAL's shared-memory
    index, which any reader of a crashed WAL rebuilds (it holds no data)."""
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*"))
            if p.is_file() and not p.name.endswith((".log", "-shm"))}


def test_a_healthy_stage_exits_0_and_nothing_is_touched(paused_stage, tmp_path, mockserver):
    before = fingerprint(paused_stage)
    result = verify(paused_stage)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Stage graph: healthy")
    data = json.loads(verify(paused_stage, "graph", "--json").stdout)
    assert data["healthy"] is True and data["problems"] == []
    assert fingerprint(paused_stage) == before
    # a killed stage, its WAL beside it: read as it is, the WAL left alone
    ns = mockserver.namespace()
    killed = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/2000/5/0")},
                   feed="out.jsonl")
    kill_after(killed, mockserver, ns, 300)
    before = fingerprint(tmp_path)
    assert any(name.endswith("-wal") for name in before)
    result = verify(tmp_path, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fingerprint(tmp_path) == before


def damage_forged_blob(db):
    seq, blob = db.execute("SELECT seq, request FROM frontier ORDER BY seq LIMIT 1").fetchone()
    forged = blob[:40] + bytes([blob[40] ^ 1]) + blob[41:]  # one bit of the pickle
    db.execute("UPDATE frontier SET request = ? WHERE seq = ?", (forged, seq))


def damage_counts(db):
    db.execute("UPDATE status_counts SET n = n + 5 WHERE status = 1")


@pytest.mark.parametrize("damage, expected", [
    (damage_forged_blob, r"1 of [\d,]+ stored requests fail their signature"),
    (damage_counts, r"done requests: counted [\d,]+, but the ledger holds [\d,]+"),
])
def test_damage_in_the_stage_file_exits_1_with_what_is_wrong(paused_stage, tmp_path, damage,
                                                             expected):
    workdir = copy_of(paused_stage, tmp_path)
    db = sqlite3.connect(workdir / "checkpoints" / "graph.sqlite", isolation_level=None)
    damage(db)
    db.close()
    before = fingerprint(workdir)
    result = verify(workdir, "graph")
    assert result.returncode == 1
    assert "Stage graph: 1 problem(s)" in result.stdout
    assert re.search(expected, result.stdout), result.stdout
    assert "scrapy checkpoint reset graph" in result.stdout
    assert fingerprint(workdir) == before


def test_a_truncated_stage_file_exits_1(paused_stage, tmp_path):
    workdir = copy_of(paused_stage, tmp_path)
    path = workdir / "checkpoints" / "graph.sqlite"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = fingerprint(workdir)
    result = verify(workdir)
    assert result.returncode == 1
    assert "Stage graph: 1 problem(s)" in result.stdout
    assert ("integrity_check" in result.stdout or "cannot be read" in result.stdout), (
        result.stdout
    )
    assert fingerprint(workdir) == before


def test_a_changed_feed_exits_1(paused_stage, tmp_path):
    workdir = copy_of(paused_stage, tmp_path)
    feed = workdir / "out.jsonl"
    lines = feed.read_bytes().splitlines(keepends=True)
    feed.write_bytes(b"".join(lines[1:]))  # a line deleted: shorter than committed
    result = verify(workdir)
    assert result.returncode == 1 and "shorter than the" in result.stdout, result.stdout
    # a line made longer: as long as committed, or longer, but no line ends there
    feed.write_bytes(lines[0][:-1] + b' , "x": 1}\n' + b"".join(lines[1:]))
    result = verify(workdir)
    assert result.returncode == 1 and "no longer end a line" in result.stdout, result.stdout
    # what a killed run wrote past its last commit is no damage: a resume cuts it
    feed.write_bytes(b"".join(lines) + b'{"url": "uncommitted"}\n')
    result = verify(workdir)
    assert result.returncode == 0, result.stdout
    assert "bytes past the last commit" in result.stdout


def test_a_redis_stage_is_verified_too(tmp_path, mockserver, redis_server):
    ns = mockserver.namespace()
    url = redis_server.url(db=12)
    client = redis.Redis.from_url(url)
    client.flushdb()
    crawl = graph_crawl(tmp_path, mockserver, ns, 2000, backend=url)
    kill_after(crawl, mockserver, ns, 200)
    healthy = scrapy_checkpoint("verify", "--backend", url, "--dir",
                                str(tmp_path / "checkpoints"), cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    client.hincrby("scrapy_resume:graph:counts", "1", 3)
    damaged = scrapy_checkpoint("verify", "--backend", url, "--dir",
                                str(tmp_path / "checkpoints"), cwd=tmp_path)
    assert damaged.returncode == 1
    assert "done requests: counted" in damaged.stdout, damaged.stdout
