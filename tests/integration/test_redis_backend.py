"""The Redis backend for one worker: the same refusals and warnings as SQLite,
plus the settings a scrapy-redis crawl needs. Real crawls, a real redis-server."""

from __future__ import annotations

import signal

import redis
from scrapy.settings import Settings

from scrapy_resume.components.queue import shared_queue_problems
from tests.crawling import Crawl, graph_crawl, graph_page, was_killed


def graph(ns: str, size: int, n: int = 0) -> str:
    return graph_page(ns, size, 5, n)


def redis_crawl(workdir, mockserver, ns, redis_url, size, **settings) -> Crawl:
    workdir.mkdir(exist_ok=True)
    return graph_crawl(workdir, mockserver, ns, size, backend=redis_url, settings=settings)


def test_a_second_process_on_the_stage_is_refused_and_a_killed_one_does_not_block(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    url = redis_server.url(db=3)
    redis.Redis.from_url(url).flushdb()
    mockserver.configure(ns, delay_ms=40)
    first = redis_crawl(tmp_path / "first", mockserver, ns, url, 300)
    second = redis_crawl(tmp_path / "second", mockserver, ns, url, 300)
    running = first.start()
    mockserver.wait_for_hits(ns, 10)
    running.send_signal(signal.SIGSTOP)  # frozen mid-crawl, however slow the machine
    refused = second.run()
    assert refused.finish_reason == "checkpoint_locked", refused.log[-3000:]
    assert f"{running.pid}" in refused.log  # names the process that holds the stage

    running.send_signal(signal.SIGKILL)
    assert was_killed(first.finish(running))
    # the lock of a dead process on this host is taken over at once, not after it expires
    resumed = first.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    summary = first.summary("graph")
    assert (summary.status, summary.done, summary.pending) == ("completed", 300, 0)


def test_a_server_without_persistence_is_warned_about(tmp_path, mockserver, redis_server):
    ns = mockserver.namespace()
    url = redis_server.url(db=4)
    client = redis.Redis.from_url(url)
    client.config_set("appendonly", "no")
    try:
        result = redis_crawl(tmp_path, mockserver, ns, url, 20).run()
    finally:
        client.config_set("appendonly", "yes")
    assert result.finish_reason == "finished", result.log[-3000:]
    assert "runs without persistence (appendonly no, no snapshots)" in result.log


def test_scrapy_redis_with_a_sqlite_checkpoint_is_refused_before_any_request(
    tmp_path, mockserver, redis_server
):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(graph(ns, 20))}, settings={
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "SCHEDULER_PERSIST": "True",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "REDIS_URL": redis_server.url(db=5),
    })
    result = crawl.run()
    assert result.finish_reason == "checkpoint_misconfigured", result.log[-3000:]
    assert "set CHECKPOINT_BACKEND to the Redis server scrapy-redis uses" in result.log
    assert mockserver.hits(ns) == {}


def test_each_scrapy_redis_setting_that_would_lose_requests_is_named(redis_server):
    url = redis_server.url(db=5)
    good = {
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_QUEUE_CLASS": "scrapy_resume.LeasedPriorityQueue",
        "REDIS_URL": url,
    }
    assert shared_queue_problems(Settings(good), url) == []
    cases = {
        "SCHEDULER_PERSIST": {"SCHEDULER_PERSIST": False},
        "SCHEDULER_FLUSH_ON_START": {"SCHEDULER_FLUSH_ON_START": True},
        "SCHEDULER_QUEUE_CLASS": {"SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.FifoQueue"},
        "DUPEFILTER_CLASS": {"DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter"},
        "same Redis server and database": {"REDIS_URL": redis_server.url(db=6)},
    }
    for named, change in cases.items():
        [problem] = shared_queue_problems(Settings({**good, **change}), url)
        assert named in problem
