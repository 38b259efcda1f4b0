"""Several workers crawl one stage through scrapy-redis, with the Redis backend.

Real processes, a real redis-server and a real SIGKILL: one worker is killed
mid-crawl and not restarted until the others have finished.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import redis

from scrapy_resume import CheckpointCorrupt
from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.store.redis.backend import RedisBackend
from scrapy_resume.store.redis.keys import StageKeys
from scrapy_resume.store.redis.scripts import LUA, lua
from tests.crawling import Crawl, graph_page, scrapy_checkpoint, was_killed
from tests.redisserver import RedisServer

SIZE = 3000
FANOUT = 5
WORKERS = 3


def page_path(ns: str, n: int) -> str:
    return graph_page(ns, SIZE, FANOUT, n)


def scrapy_redis_worker(tmp_path, number: int, start: str, redis_url: str, **args: str) -> Crawl:
    workdir = tmp_path / f"worker{number}"
    workdir.mkdir()
    return Crawl(workdir, "graph", args={"start": start, **args}, backend=redis_url, settings={
        "CHECKPOINT_DIR": str(tmp_path / "checkpoints"),  # one signing secret for all
        # short, so that the survivors soon take over a dead worker's leases; long
        # enough that a live worker's heartbeat (every third of it) renews them on
        # a loaded machine
        "CHECKPOINT_LEASE_SECONDS": "6",
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "SCHEDULER_PERSIST": "True",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "REDIS_URL": redis_url,
    })


def empty_database(redis_server, db: int) -> tuple[str, redis.Redis]:
    """A Redis database for one test, emptied: its URL and a client."""
    url = redis_server.url(db=db)
    client = redis.Redis.from_url(url)
    client.flushdb()
    return url, client


def leases_of(client: redis.Redis, pid: int) -> int:
    owners = client.hvals(StageKeys("graph").lease_owner)
    return sum(1 for owner in owners if owner.decode().split(":")[1] == str(pid))


def done_so_far(crawl: Crawl) -> int:
    try:
        return crawl.summary("graph").done
    except CheckpointCorrupt:
        return 0  # the first worker is still creating the stage


def feed_lines(crawl: Crawl) -> list[str]:
    return crawl.feed.read_text().splitlines() if crawl.feed.exists() else []


def assert_every_item_once(workers: list[Crawl], mockserver, ns: str) -> None:
    """The stage completed with every page done, and the union of the workers' feeds
    holds each page's item exactly once: 0 lost, 0 twice."""
    summary = workers[0].summary("graph")
    assert (summary.status, summary.done, summary.failed) == ("completed", SIZE, 0)
    lines = [line for crawl in workers for line in feed_lines(crawl)]
    urls = collections.Counter(json.loads(line)["url"] for line in lines)
    assert set(urls) == {mockserver.url(page_path(ns, n)) for n in range(SIZE)}
    assert len(lines) == SIZE, [url for url, n in urls.items() if n > 1][:5]


def test_a_killed_worker_loses_nothing_and_its_resume_leaves_no_duplicate(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    redis_url, client = empty_database(redis_server, db=2)
    mockserver.configure(ns, delay_ms=5)  # requests stay in flight a little
    start = mockserver.url(page_path(ns, 0))
    workers = [scrapy_redis_worker(tmp_path, i, start, redis_url) for i in range(WORKERS)]
    procs = [crawl.start() for crawl in workers]
    victim, survivors = 1, [0, 2]
    mockserver.arm(ns, procs[victim].pid, signal="KILL", at=SIZE // 3)

    killed = workers[victim].finish(procs[victim])
    assert was_killed(killed), killed.log[-3000:]
    # what the killed worker had taken from the queue and not committed
    in_flight = leases_of(client, procs[victim].pid)
    results = [workers[i].finish(procs[i], timeout=180) for i in survivors]
    for result in results:
        assert result.finish_reason == "finished", result.log[-3000:]

    # 0 lost: every page of the site was fetched and yielded its item
    hits = mockserver.hits(ns)
    assert {page_path(ns, n) for n in range(SIZE)} <= set(hits)
    fetched_twice = sum(1 for n in hits.values() if n > 1)
    assert in_flight > 0  # the kill really hit the worker mid-crawl
    assert fetched_twice <= in_flight
    # every lease of the dead worker expired and went back to the queue
    reclaimed = sum(r.stats.get("checkpoint/leases_reclaimed", 0) for r in results)
    assert reclaimed == in_flight
    summary = workers[0].summary("graph")
    assert (summary.status, summary.done, summary.failed) == ("completed", SIZE, 0)
    # no lease is left behind, in any of its keys
    assert [client.exists(key) for key in StageKeys("graph").leases()] == [0] * 5
    listed = scrapy_checkpoint("list", "--backend", redis_url, "--json", cwd=tmp_path)
    assert [(s["stage"], s["status"], s["done"]) for s in json.loads(listed.stdout)] == [
        ("graph", "completed", SIZE)
    ]

    # before its resume, the dead worker's feed may end with uncommitted items
    lines = [line for crawl in workers for line in feed_lines(crawl)]
    urls = collections.Counter(json.loads(line)["url"] for line in lines)
    assert set(urls) == {mockserver.url(page_path(ns, n)) for n in range(SIZE)}
    assert sum(n - 1 for n in urls.values()) <= in_flight

    # its resume finds the stage completed, and cuts its feed back to its last commit,
    # here with a torn line from a crash in the middle of writing
    feed = workers[victim].feed
    store = workers[victim].open_store("graph")
    offset = store.feed_offsets()[FeedFiles(tmp_path / "checkpoints").key(str(feed))]
    store.close()
    committed = feed.read_bytes()[:offset]
    with feed.open("ab") as torn:
        torn.write(b'{"url": "torn by the kill", "title"')
    resumed = workers[victim].run(CHECKPOINT_RESUME="1")
    assert feed.read_bytes() == committed
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    assert "nothing to do" in resumed.log
    lines = [line for crawl in workers for line in feed_lines(crawl)]
    urls = collections.Counter(json.loads(line)["url"] for line in lines)
    assert len(lines) == SIZE
    assert set(urls) == {mockserver.url(page_path(ns, n)) for n in range(SIZE)}


def wake_once_taken_back(client, frozen, workers: list[Crawl], procs) -> list:
    """``frozen`` is SIGSTOPped: wake it once the others have taken back every lease
    it held (past their expiry), and let every worker finish."""
    try:
        assert leases_of(client, frozen.pid) > 0  # frozen with requests in hand
        deadline = time.monotonic() + 180
        while leases_of(client, frozen.pid) > 0:
            assert time.monotonic() < deadline, "its leases were never taken back"
            time.sleep(0.2)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    results = [crawl.finish(proc, timeout=180) for crawl, proc in zip(workers, procs)]
    for result in results:
        assert result.finish_reason == "finished", result.log[-3000:]
    return results


def test_a_frozen_worker_writes_nothing_twice(tmp_path, mockserver, redis_server):
    # SIGSTOP: a long GC pause, a stopped container, a laptop lid. Its leases expire
    # meanwhile, the others fetch those requests again; when it wakes, it must not
    # commit them (nor write their items) a second time.
    ns = mockserver.namespace()
    redis_url, client = empty_database(redis_server, db=15)
    mockserver.configure(ns, delay_ms=5)
    start = mockserver.url(page_path(ns, 0))
    workers = [scrapy_redis_worker(tmp_path, i, start, redis_url) for i in range(WORKERS)]
    procs = [crawl.start() for crawl in workers]
    frozen = procs[0]
    mockserver.wait_for_hits(ns, SIZE // 4)
    os.kill(frozen.pid, signal.SIGSTOP)
    held = leases_of(client, frozen.pid)
    results = wake_once_taken_back(client, frozen, workers, procs)
    assert_every_item_once(workers, mockserver, ns)
    # what the others took back from it is what it found lost
    reclaimed = sum(r.stats.get("checkpoint/leases_reclaimed", 0) for r in results[1:])
    lost = results[0].stats.get("checkpoint/leases_lost", 0)
    assert lost == reclaimed >= held
    assert "This worker lost" in results[0].log and "CHECKPOINT_LEASE_SECONDS=6" in (
        results[0].log
    )


def on_a_server_of_their_own(tmp_path, mockserver) -> tuple[RedisServer, str, list[Crawl]]:
    """Two workers of the site, on a redis-server of their own (a test may kill it)."""
    server = RedisServer(tmp_path / "redis")
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=5)
    start = mockserver.url(page_path(ns, 0))
    return server, ns, [scrapy_redis_worker(tmp_path, i, start, server.url()) for i in range(2)]


def test_a_worker_frozen_in_the_middle_of_a_commit_calls_it_off(tmp_path, mockserver,
                                                                redis_server):
    # frozen after the fence, before the commit: the commit script finds the leases
    # taken back, writes nothing; the worker cuts its feed back, requeues the rest
    ns = mockserver.namespace()
    redis_url, client = empty_database(redis_server, db=6)
    mockserver.configure(ns, delay_ms=5)
    start = mockserver.url(page_path(ns, 0))
    workers = [scrapy_redis_worker(tmp_path, i, start, redis_url) for i in range(2)]
    workers[0].settings["TEST_STOP_AT_COMMIT"] = "20"
    procs = [crawl.start() for crawl in workers]
    frozen = procs[0]
    deadline = time.monotonic() + 120
    while not stopped(frozen.pid):  # it stops itself, at its 20th commit
        assert frozen.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    results = wake_once_taken_back(client, frozen, workers, procs)
    assert results[0].stats.get("checkpoint/commits_called_off") == 1
    # what the other took back from it is what it found lost, in the commit or after
    reclaimed = results[1].stats.get("checkpoint/leases_reclaimed", 0)
    assert results[0].stats.get("checkpoint/leases_lost", 0) == reclaimed > 0
    assert_every_item_once(workers, mockserver, ns)


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_redis_server_killed_and_restarted_mid_crawl_loses_nothing(tmp_path, mockserver):
    # a server of its own, SIGKILLed, then started again on its append-only file
    server, ns, workers = on_a_server_of_their_own(tmp_path, mockserver)
    try:
        procs = [crawl.start() for crawl in workers]
        mockserver.wait_for_hits(ns, SIZE // 3)
        server.kill()
        time.sleep(1.0)  # down for a moment: the workers' calls wait, and retry
        server.restart()
        results = [crawl.finish(proc, timeout=180) for crawl, proc in zip(workers, procs)]
        for result in results:
            assert result.finish_reason == "finished", result.log[-3000:]
            assert "Traceback" not in result.log, result.log[-3000:]
        assert any("Lost the connection to Redis: reconnecting" in r.log for r in results)
        assert_every_item_once(workers, mockserver, ns)
    finally:
        server.stop()


def test_a_redis_server_down_too_long_stops_the_workers_and_they_resume(tmp_path, mockserver):
    server, ns, workers = on_a_server_of_their_own(tmp_path, mockserver)
    try:
        procs = [crawl.start(CHECKPOINT_REDIS_RETRY_SECONDS="1") for crawl in workers]
        mockserver.wait_for_hits(ns, SIZE // 3)
        server.kill()
        results = [crawl.finish(proc, timeout=180) for crawl, proc in zip(workers, procs)]
        for result in results:  # (down for good, as far as they can tell)
            assert result.finish_reason == "checkpoint_write_error", result.log[-3000:]
        server.restart()
        results = [crawl.run(timeout=180, CHECKPOINT_RESUME="1") for crawl in workers]
        for result in results:
            assert result.finish_reason == "finished", result.log[-3000:]
        assert_every_item_once(workers, mockserver, ns)
    finally:
        server.stop()


def test_links_refused_offsite_are_dropped_when_the_last_worker_finishes(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    redis_url, _ = empty_database(redis_server, db=8)
    # pages 5, 15, 25 and 35 link to themselves by another host name: OffsiteMiddleware
    # refuses those links in request_scheduled, after our handler has recorded them
    start = mockserver.url(f"/{ns}/g/40/3/0")
    crawl = scrapy_redis_worker(tmp_path, 0, start, redis_url, offsite_every="10")
    result = crawl.run()
    assert result.finish_reason == "finished"
    assert result.stats["offsite/filtered"] == 4
    assert len(mockserver.hits(ns)) == 40
    summary = crawl.summary("graph")
    # never in the shared queue, never leased: settled by the last worker to leave
    assert (summary.pending, summary.done, summary.dropped) == (0, 40, 4)
    assert "Checkpoint of stage graph saved (status completed, 40 done, 0 pending" in result.log


def test_checkpoint_show_lists_the_live_workers_and_their_leases(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    redis_url, _ = empty_database(redis_server, db=9)
    # a page that answers in a minute keeps the stage running while show looks at it:
    # one worker holds its lease, the other waits for it
    args = {"also": mockserver.url(f"{ns}/slow/60000/hold")}
    start = mockserver.url(page_path(ns, 0).replace(f"/{SIZE}/", "/40/"))
    workers = [scrapy_redis_worker(tmp_path, i, start, redis_url, **args) for i in range(2)]
    procs = [crawl.start() for crawl in workers]
    try:
        deadline = time.monotonic() + 120
        client = redis.Redis.from_url(redis_url)
        # every page done, the slow one leased, and both workers joined (on a
        # loaded machine, one can finish the 40 pages before the other starts)
        while done_so_far(workers[0]) < 40 or client.zcard(StageKeys("graph").workers) < 2:
            assert time.monotonic() < deadline, "the workers are too slow"
            time.sleep(0.1)
        show = scrapy_checkpoint("show", "graph", "--backend", redis_url, "--json",
                                 cwd=tmp_path)
        assert show.returncode == 0, show.stderr
        shown = json.loads(show.stdout)
        assert sorted(w["worker"].split(":")[1] for w in shown["workers"]) == sorted(
            str(p.pid) for p in procs
        )
        assert shown["status"] == "running"
        assert (shown["leases"]["outstanding"], shown["done"]) == (1, 40)
        assert sum(w["leases"] for w in shown["workers"]) == 1
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(30)


def test_every_lua_script_compiles_on_a_real_server(redis_server):
    _, client = empty_database(redis_server, db=10)
    for path in sorted(LUA.glob("*.lua")):
        client.script_load(lua(path.stem, with_clock=path.stem != "now_ms"))


def test_a_live_workers_heartbeat_renews_its_membership_and_its_leases(redis_server, tmp_path):
    # The heartbeat's script did not compile (a Lua keyword as a variable name),
    # so no lease was ever renewed: a request taking longer than the lease was
    # handed to another worker while its own was still on it.
    redis_url, client = empty_database(redis_server, db=11)
    client.zadd("queue", {b"a request": 0})
    worker = RedisBackend(redis_url, tmp_path, lease_seconds=60).lock("graph", shared=True)
    worker.acquire()
    try:
        [(_, lease)] = worker.take("queue")
        keys = StageKeys("graph")
        joined = client.zscore(keys.workers, worker.worker_id)
        leased = client.zscore(keys.lease_expiry, lease)
        time.sleep(0.01)  # Redis's clock moves on (milliseconds)
        worker.beat()  # what the heartbeat thread calls
        assert client.zscore(keys.workers, worker.worker_id) > joined
        assert client.zscore(keys.lease_expiry, lease) > leased
    finally:
        worker.release()


def test_a_commit_under_a_lease_taken_back_writes_nothing(redis_server, tmp_path):
    # The window the fence cannot see: a lease taken back between the fence and the
    # commit (the worker froze in between). The commit script checks it again, and
    # calls the whole commit off.
    from scrapy_resume.store.records import CommitBatch, RequestStatus, Settlement

    redis_url, client = empty_database(redis_server, db=7)
    client.zadd("queue", {b"a request": 0})
    backend = RedisBackend(redis_url, tmp_path, lease_seconds=60)
    store = backend.create("graph", "graph", {})
    worker = backend.lock("graph", shared=True)
    worker.acquire()
    try:
        [(_, lease)] = worker.take("queue")
        assert worker.fence([lease]) == []  # still its own
        # another worker takes it back: its lease ends, the request is queued again
        RedisBackend(redis_url, tmp_path, lease_seconds=60).lock(
            "graph", shared=True).requeue([lease])
        assert client.zcard("queue") == 1
        batch = CommitBatch(
            settlements=[Settlement(key=b"k" * 20, status=RequestStatus.DONE, url="http://x/",
                                    lease=lease)],
            counters={"done": 1, "items": 1}, feed_offsets={"items.jsonl": 100},
            worker=worker.worker_id,
        )
        assert store.commit(batch) == 1
        summary = store.summary()
        assert (summary.done, summary.counters.get("items", 0), store.feed_offsets()) == (0, 0, {})
        assert worker.fence([lease]) == [lease]
    finally:
        worker.release()
        store.close()


def test_a_reset_stage_starts_over_with_scrapy_redis_s_queue_and_dupefilter_aside(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    redis_url, client = empty_database(redis_server, db=16)
    start = mockserver.url(f"/{ns}/g/40/3/0")
    crawl = scrapy_redis_worker(tmp_path, 0, start, redis_url)
    assert crawl.run().finish_reason == "finished"
    # left behind, the old crawl's fingerprints made every link of the new one "seen":
    # it fetched its start page, and called the stage completed
    reset = scrapy_checkpoint("reset", "graph", "--force", "--backend", redis_url,
                              "-s", "SCHEDULER=scrapy_redis.scheduler.Scheduler", cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert "with scrapy-redis's graph:requests, graph:dupefilter, graph:dupefilter:calls" in (
        reset.stdout)
    assert crawl.run().finish_reason == "finished"
    again = crawl.run(CHECKPOINT_RESET="1")
    assert again.finish_reason == "finished"
    assert "with scrapy-redis's graph:requests, graph:dupefilter" in again.log
    # every page fetched by each of the three crawls
    assert sorted(set(mockserver.hits(ns).values())) == [3]
    assert len(mockserver.hits(ns)) == 40
    summary = crawl.summary("graph")
    assert (summary.status, summary.done) == ("completed", 40)
    # the old ones are aside, beside the stage's backups
    backups = sorted(key.decode() for key in client.keys("graph:dupefilter.bak-*"))
    # (every page but the start page, which is dont_filter, and never linked to)
    assert len(backups) == 2 and all(client.scard(key) == 39 for key in backups)


def test_a_worker_killed_between_the_dupefilter_and_the_queue_loses_nothing(
    tmp_path, mockserver, redis_server
):
    # scrapy-redis's scheduler asks the dupefilter, then pushes the request: a worker
    # killed in between had left the fingerprint "seen" and the request nowhere, so
    # the page was never fetched, even once its parent was fetched again
    ns = mockserver.namespace()
    redis_url, _ = empty_database(redis_server, db=18)
    size = 300
    crawl = scrapy_redis_worker(tmp_path, 0, mockserver.url(graph_page(ns, size, FANOUT)),
                                redis_url)
    killing = "tests.spiders.killing.KillingDupeFilter"  # (a resume compares DUPEFILTER_CLASS)
    killed = crawl.run(DUPEFILTER_CLASS=killing, TEST_KILL_AFTER_NEW="100")
    assert was_killed(killed), killed.log[-3000:]
    # the resume waits for the dead worker's leases to expire, and takes them back
    resumed = crawl.run(DUPEFILTER_CLASS=killing, CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    summary = crawl.summary("graph")
    assert (summary.status, summary.done, summary.pending) == ("completed", size, 0)
    urls = collections.Counter(json.loads(line)["url"] for line in feed_lines(crawl))
    assert set(urls) == {mockserver.url(graph_page(ns, size, FANOUT, n)) for n in range(size)}
    assert set(urls.values()) == {1}


def test_a_worker_killed_between_a_start_request_s_claim_and_the_queue_loses_nothing(
    tmp_path, mockserver, redis_server
):
    # a start request is claimed (so that one worker only schedules it), then pushed:
    # a worker killed in between had left it claimed and in no queue, and every later
    # run took it for one scheduled already
    ns = mockserver.namespace()
    redis_url, _ = empty_database(redis_server, db=19)
    size = 60
    # a second start page, linked from nowhere (it links to its own site's page 1)
    lone = [mockserver.url(graph_page(ns, 1, FANOUT, n)) for n in (0, 1)]
    crawl = scrapy_redis_worker(tmp_path, 0, mockserver.url(graph_page(ns, size, FANOUT)),
                                redis_url, also=lone[0])
    killed = crawl.run(TEST_KILL_AT_START_REQUEST="2")
    assert was_killed(killed), killed.log[-3000:]
    resumed = crawl.run(TEST_KILL_AT_START_REQUEST="0", CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    summary = crawl.summary("graph")
    assert (summary.status, summary.done, summary.pending) == ("completed", size + 2, 0)
    urls = collections.Counter(json.loads(line)["url"] for line in feed_lines(crawl))
    pages = {mockserver.url(graph_page(ns, size, FANOUT, n)) for n in range(size)}
    assert set(urls) == pages | set(lone)


def test_a_start_request_claimed_with_its_fingerprint_queued_already_is_not_pushed_twice(
    redis_server, tmp_path
):
    # the queue's push claims a start request and adds its fingerprint in one step; the
    # dupefilter was asked just before, and another worker may have queued a link to the
    # same page in between: the claim stands (the copy in the queue settles its key), and
    # the request is not queued a second time (it would be fetched, and its item
    # written, twice)
    from scrapy_resume.store.redis.store import QueuedPush

    redis_url, client = empty_database(redis_server, db=20)
    store = RedisBackend(redis_url, tmp_path).create("graph", "graph", {})
    try:
        client.sadd("graph:dupefilter", "fp-queued")
        queued = QueuedPush("graph:requests", 0, b"copy", "graph:dupefilter", "fp-queued")
        assert store.claim(b"a" * 20, "http://x/a", queued) is True
        assert client.zcard("graph:requests") == 0
        new = QueuedPush("graph:requests", 0, b"new", "graph:dupefilter", "fp-new")
        assert store.claim(b"b" * 20, "http://x/b", new) is True
        assert client.zrange("graph:requests", 0, -1) == [b"new"]
        assert client.sismember("graph:dupefilter", "fp-new")
        assert store.summary().pending == 2
    finally:
        store.close()
