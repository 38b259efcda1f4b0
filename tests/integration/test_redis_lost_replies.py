"""A reply lost: the connection to Redis drops after the server ran a command
(a restart, a failover), and the client sends it again. A commit, a pop, a claim,
a run start, a lock, a stage moved aside and a dupefilter's add sent twice are
applied once. A real redis-server behind a proxy that loses the reply
to the command it is told (tests/redisproxy.py); real crawls."""

from __future__ import annotations

import collections
import hashlib
import json

import pytest
import redis
import scrapy

from scrapy_resume.store.records import CommitBatch, RequestStatus, Settlement
from scrapy_resume.store.redis.backend import RedisBackend
from scrapy_resume.store.redis.connection import retrying
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.redis.scripts import lua
from tests.crawling import Crawl, graph_page
from tests.redisproxy import ReplyLosingProxy

COMMIT = hashlib.sha1(lua("commit").encode()).hexdigest().encode()
CLAIM = hashlib.sha1(lua("claim").encode()).hexdigest().encode()
BEGIN_RUN = hashlib.sha1(lua("begin_run").encode()).hexdigest().encode()
DUPEFILTER_ADD = hashlib.sha1(lua("dupefilter_add").encode()).hexdigest().encode()
PUSH_NEW = hashlib.sha1(lua("push_new").encode()).hexdigest().encode()
POP = hashlib.sha1(lua("pop_and_lease", with_clock=True).encode()).hexdigest().encode()


@pytest.fixture
def proxy(redis_server):
    redis.Redis.from_url(redis_server.url(db=0)).flushdb()
    proxy = ReplyLosingProxy(redis_server.port)
    yield proxy
    proxy.close()


def done(key: bytes, items: int = 1) -> CommitBatch:
    return CommitBatch(
        settlements=[Settlement(key=key, status=RequestStatus.DONE, url="http://x/",
                                attempts=1)],
        counters={"items": items}, feed_offsets={"items.jsonl": 100 * items},
    )


def test_a_commit_whose_reply_is_lost_is_applied_once(proxy, tmp_path):
    backend = RedisBackend(proxy.url(), tmp_path, retry_seconds=30)
    store = backend.create("graph", "graph", {})
    try:
        assert store.commit(done(b"a" * 20)) == 0
        proxy.lose_reply_to(COMMIT)
        assert store.commit(done(b"b" * 20, items=2)) == 0  # sent twice, by redis-py's retry
        assert proxy.lost == 1
        summary = store.summary()
        assert (summary.done, summary.counters["items"]) == (2, 3)
        assert [row["attempts"] for row in store.ledger_rows()] == [1, 1]
    finally:
        store.close()


def test_a_run_begun_and_a_start_request_claimed_whose_replies_are_lost_count_once(
    proxy, tmp_path
):
    client = redis.Redis.from_url(proxy.url())
    backend = RedisBackend(proxy.url(), tmp_path, retry_seconds=30)
    store = backend.create("graph", "graph", {})
    try:
        for script in ("begin_run", "claim"):  # loaded first (see the pop's test)
            client.script_load(lua(script))
        proxy.lose_reply_to(BEGIN_RUN)
        proxy.lose_reply_to(CLAIM)
        assert store.begin_run("fresh") == 1
        # sent again, the claim was refused as a key known already: the start request
        # was then scheduled by nobody
        assert store.claim(b"s" * 20, "http://x/") is True
        assert proxy.lost == 2
        assert [run["mode"] for run in store.runs()] == ["fresh"]
        assert client.hkeys(StageKeys("graph").runs) == [b"1"]
        assert store.summary().counters["runs"] == 1
        assert store.summary().pending == 1
        # a later call is a call of its own
        assert store.begin_run("resume") == 2
        assert store.claim(b"s" * 20, "http://x/") is False
        assert store.summary().counters["runs"] == 2
    finally:
        store.close()


def test_a_stage_lock_whose_reply_is_lost_is_held(proxy, tmp_path):
    backend = RedisBackend(proxy.url(), tmp_path, retry_seconds=30)
    lock = backend.lock("graph")
    proxy.lose_reply_to(b"$2\r\nNX\r\n")  # SET key id NX PX ttl
    try:
        lock.acquire()  # sent again, the SET found the lock taken: by itself
        assert proxy.lost == 1 and lock.held
        assert redis.Redis.from_url(proxy.url()).get(StageKeys("graph").lock) == (
            backend.worker_id.encode())
    finally:
        lock.release()


def test_a_stage_moved_aside_whose_reply_is_lost_is_moved_whole(proxy, tmp_path):
    backend = RedisBackend(proxy.url(), tmp_path, retry_seconds=30)
    store = backend.create("graph", "graph", {})
    try:
        store.commit(done(b"a" * 20, items=3))
    finally:
        store.close()
    proxy.lose_reply_to(b"RENAME")  # the script goes whole, with EVAL
    backup = backend.move_aside("graph")  # (a reset): sent again, it finds nothing to move
    assert proxy.lost == 1
    assert not backend.exists("graph")
    moved = backend.open(backup.rsplit("(stage ", 1)[1].rstrip(")"))
    try:
        summary = moved.summary()
        assert (summary.done, summary.counters["items"]) == (1, 3)
    finally:
        moved.close()


def test_a_new_request_whose_add_to_the_shared_dupefilter_loses_its_reply_stays_new(proxy):
    # (SharedDupeFilter alone: with LeasedPriorityQueue, the add is the push, whose
    # lost replies the crawl below loses)
    from scrapy_redis.dupefilter import RFPDupeFilter

    from scrapy_resume import SharedDupeFilter

    # a client that retries, as the add-on makes scrapy-redis's (REDIS_PARAMS)
    client = redis.Redis.from_url(proxy.url(), **retrying(30))
    new = scrapy.Request("http://x/new")
    # scrapy-redis's own: its SADD sent again finds the fingerprint it added, and the
    # scheduler would drop the new request as a duplicate of itself
    proxy.lose_reply_to(b"SADD")
    assert RFPDupeFilter(client, key="plain:dupefilter").request_seen(new) is True
    ours = SharedDupeFilter(client, key="graph:dupefilter")
    client.script_load(lua("dupefilter_add"))  # (see the pop's test)
    proxy.lose_reply_to(DUPEFILTER_ADD)
    assert ours.request_seen(new) is False
    assert proxy.lost == 2
    assert ours.request_seen(new) is True  # a later link to it is a duplicate
    assert ours.request_seen(scrapy.Request("http://x/other")) is False
    ours.clear()
    assert client.keys("graph:*") == []


def test_a_pop_whose_reply_is_lost_takes_its_requests_once(proxy, tmp_path):
    client = redis.Redis.from_url(proxy.url())
    client.zadd("queue", {b"first": 0, b"second": 1, b"third": 2})
    worker = RedisBackend(proxy.url(), tmp_path, retry_seconds=30).lock("graph", shared=True)
    worker.acquire()
    try:
        # loaded first: the reply lost is the pop's, not the "no such script" that
        # precedes a script's first run
        client.script_load(lua("pop_and_lease", with_clock=True))
        proxy.lose_reply_to(POP)
        taken = worker.take("queue", 2)
        assert proxy.lost == 1
        assert [request for request, _ in taken] == [b"first", b"second"]
        # no lease that nobody renews (its request would wait for it to expire)
        assert client.zcard(StageKeys("graph").lease_expiry) == 2
        assert client.zrange("queue", 0, -1) == [b"third"]
        assert [request for request, _ in worker.take("queue", 2)] == [b"third"]
    finally:
        worker.release()


def test_a_crawl_whose_commits_and_pops_lose_their_replies_writes_every_item_once(
    proxy, tmp_path, mockserver
):
    # Without the once-only check, the commit sent again found its leases released
    # (by itself, the first time), was called off, and cut its items from the feed:
    # done in the checkpoint, missing from the feed.
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=5)
    size = 300
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(graph_page(ns, size, 5))},
                  backend=proxy.url(), settings={
                      "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
                      "SCHEDULER_PERSIST": "True",
                      "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
                      "REDIS_URL": proxy.url(),
                  })
    proc = crawl.start()
    mockserver.wait_for_hits(ns, 30)
    proxy.lose_reply_to(COMMIT, times=3)
    proxy.lose_reply_to(POP, times=3)
    proxy.lose_reply_to(PUSH_NEW, times=3)  # a new request and its fingerprint, in one step
    result = crawl.finish(proc)
    assert result.finish_reason == "finished", result.log[-3000:]
    assert proxy.lost == 9, "the crawl ended before every reply was lost"
    assert "Traceback" not in result.log, result.log[-3000:]
    urls = collections.Counter(json.loads(line)["url"] for line in crawl.feed.read_text()
                               .splitlines())
    assert set(urls) == {mockserver.url(graph_page(ns, size, 5, n)) for n in range(size)}
    assert sum(urls.values()) == size
    summary = crawl.summary("graph")
    assert (summary.status, summary.done, summary.counters["items"]) == ("completed", size, size)
    assert result.stats.get("checkpoint/commits_called_off", 0) == 0
    # the commit script's progress samples, the last one at the close
    store = crawl.open_store("graph")
    try:
        samples = store.progress()
    finally:
        store.close()
    assert {sample["run"] for sample in samples} == {1}
    assert (samples[-1]["done"], samples[-1]["pending"], samples[-1]["items"]) == (size, 0, size)
    done = [sample["done"] for sample in samples]
    assert done == sorted(done) and len(samples) >= 3
