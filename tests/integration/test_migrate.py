"""`scrapy checkpoint migrate`: a paused stage copied SQLite -> Redis -> SQLite,
each copy checked; a resume from each finishes with every item exactly once.
Real crawls, a real redis-server."""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter

import redis

from tests.crawling import graph_crawl, graph_pages, scrapy_checkpoint

SIZE = 600


def stage_files(directory) -> dict[str, bytes]:
    """The bytes of a checkpoint directory's files, but SQLite's -shm (any reader
    rebuilds it) and the stage's lock file (it names the process that last held it)."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.endswith(("-shm", ".lock"))}


def redis_stage(url: str) -> dict[bytes, bytes]:
    """Every key of the stage on Redis, and its value as DUMP serializes it."""
    client = redis.Redis.from_url(url)
    return {key: client.dump(key) for key in sorted(client.keys("scrapy_resume:graph:*"))}


def test_a_paused_stage_goes_to_redis_and_back_and_each_copy_resumes(tmp_path, mockserver,
                                                                     redis_server):
    ns = mockserver.namespace()
    url = redis_server.url(db=13)
    redis.Redis.from_url(url).flushdb()
    mockserver.configure(ns, delay_ms=30)
    origin = tmp_path / "origin"
    origin.mkdir()
    crawl = graph_crawl(origin, mockserver, ns, SIZE, feed="out.jsonl")
    proc = crawl.start()
    mockserver.arm(ns, proc.pid, signal="TERM", at=150)
    assert crawl.finish(proc).finish_reason == "shutdown"
    mockserver.configure(ns, delay_ms=0)
    pending = crawl.summary("graph").pending
    assert pending > 0

    source = stage_files(origin / "checkpoints")
    there = scrapy_checkpoint("migrate", "graph", "--to", url, "--dir",
                              str(origin / "checkpoints"), cwd=origin)
    assert there.returncode == 0, there.stdout + there.stderr
    assert f"pending) from {origin / 'checkpoints' / 'graph.sqlite'}" in there.stdout
    copied = redis_stage(url)
    back = scrapy_checkpoint("migrate", "graph", "--backend", url, "--to",
                             str(origin / "copy"), "--dir", str(origin / "checkpoints"),
                             cwd=origin)
    assert back.returncode == 0, back.stdout + back.stderr
    again = scrapy_checkpoint("migrate", "graph", "--to", url, "--dir",
                              str(origin / "checkpoints"), cwd=origin)
    assert again.returncode == 1 and "exists in" in again.stderr  # never over a stage
    # a copy reads its source and writes nothing to it
    assert stage_files(origin / "checkpoints") == source
    assert redis_stage(url) == copied

    # each copy resumed in a directory of its own (the feed file and the copies)
    expected = graph_pages(mockserver, ns, SIZE, 5)
    for name, directory, backend in (("from-redis", "checkpoints", url),
                                     ("from-sqlite", "copy", "")):
        workdir = tmp_path / name
        shutil.copytree(origin, workdir)
        resumed = graph_crawl(workdir, mockserver, ns, SIZE, feed="out.jsonl", backend=backend,
                              settings={"CHECKPOINT_DIR": str(workdir / directory)})
        result = resumed.run(CHECKPOINT_RESUME="1")
        assert result.finish_reason == "finished", result.log[-3000:]
        assert "Resuming stage graph:" in result.log and f"{pending:,} pending" in result.log
        counts = Counter(item["url"] for item in resumed.items())
        assert sorted(counts) == expected and set(counts.values()) == {1}, name


def test_a_stage_being_crawled_is_not_copied(tmp_path, mockserver, redis_server):
    ns = mockserver.namespace()
    url = redis_server.url(db=14)
    redis.Redis.from_url(url).flushdb()
    crawl = graph_crawl(tmp_path, mockserver, ns, 3000)
    proc = crawl.start()
    mockserver.wait_for_hits(ns, 50)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        refused = scrapy_checkpoint("migrate", "graph", "--to", url, "--dir",
                                    str(tmp_path / "checkpoints"), cwd=tmp_path)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        crawl.finish(proc)
    assert refused.returncode == 1 and "is being crawled by process" in refused.stderr
    assert redis.Redis.from_url(url).keys("scrapy_resume:graph:*") == []


def test_a_stage_crawled_through_scrapy_redis_is_not_copied_with_its_queue_outside(
    tmp_path, mockserver, redis_server
):
    from tests.integration.test_redis_workers import empty_database, scrapy_redis_worker

    ns = mockserver.namespace()
    url, _ = empty_database(redis_server, db=17)
    mockserver.configure(ns, delay_ms=30)
    crawl = scrapy_redis_worker(tmp_path, 0, mockserver.url(f"/{ns}/g/{SIZE}/5/0"), url)
    migrate = ("migrate", "graph", "--backend", url, "--to", str(tmp_path / "copy"),
               "--dir", str(tmp_path / "checkpoints"))
    proc = crawl.start()
    mockserver.wait_for_hits(ns, 50)
    os.kill(proc.pid, signal.SIGSTOP)  # a live worker holds no lock: it is refused by name
    try:
        refused = scrapy_checkpoint(*migrate, cwd=tmp_path)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert refused.returncode == 1 and "is being crawled by" in refused.stderr
    os.kill(proc.pid, signal.SIGTERM)
    assert crawl.finish(proc).finish_reason == "shutdown"
    # paused: its pending requests are in scrapy-redis's queue, not in the stage
    pending = crawl.summary("graph").pending
    assert pending > 0
    refused = scrapy_checkpoint(*migrate, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout
    assert f"{pending:,} pending request(s) that are not in the checkpoint" in refused.stderr
    assert not (tmp_path / "copy").exists() or list((tmp_path / "copy").iterdir()) == []
