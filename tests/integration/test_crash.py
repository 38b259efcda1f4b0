"""Real crawls, killed with real signals at seeded moments, then resumed."""

from __future__ import annotations

import random

import pytest

from scrapy_resume import RequestStatus
from tests.crawling import (
    Crawl,
    graph_page,
    kill_after,
    press_ctrl_c_again,
    run_until_finished,
    was_killed,
)

SIZE = 2000
FANOUT = 5
KILLS = 3


def page_path(ns: str, n: int) -> str:
    return graph_page(ns, SIZE, FANOUT, n)


@pytest.mark.parametrize("enable, backend", [
    ("addon", "sqlite"), ("manual", "sqlite"), ("addon", "redis")
])
def test_sigkill_then_resume_loses_nothing_and_refetches_nothing_done(
    tmp_path, mockserver, enable, backend, request
):
    ns = mockserver.namespace()
    # the Redis backend gets a database of its own: the stage is named after the spider
    url = request.getfixturevalue("redis_server").url(db=1) if backend == "redis" else ""
    crawl = Crawl(
        tmp_path, "graph", enable=enable, args={"start": mockserver.url(page_path(ns, 0))},
        backend=url,
    )
    rng = random.Random(f"sigkill-{enable}-{backend}")
    runs = run_until_finished(
        crawl, mockserver, ns, rng, interruptions=[{"signal": "KILL"}] * KILLS, stage="graph"
    )

    assert len(runs) == KILLS + 1
    assert all(was_killed(result) for result, _ in runs[:-1])
    # lost = 0: every page of the site yielded its item
    all_pages = {mockserver.url(page_path(ns, n)) for n in range(SIZE)}
    assert {item["url"] for item in crawl.items()} == all_pages
    # within one run a page is downloaded at most once
    for _, run_hits in runs:
        assert {p: n for p, n in run_hits.items() if n > 1} == {}
    # the final run's download count matches the server, and it skipped done pages
    final, final_hits = runs[-1]
    assert final.stats["downloader/response_count"] == sum(final_hits.values())
    assert final.stats["checkpoint/skipped"] > 0
    summary = crawl.summary("graph")
    assert (summary.status, summary.pending, summary.failed) == ("completed", 0, 0)
    assert summary.done == SIZE
    assert summary.counters["runs"] == KILLS + 1


def test_graceful_stop_then_resume_downloads_every_page_exactly_once(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(page_path(ns, 0))})
    rng = random.Random("sigterm")
    runs = run_until_finished(
        crawl, mockserver, ns, rng, interruptions=[{"signal": "TERM"}] * 2, stage="graph"
    )

    assert [result.finish_reason for result, _ in runs] == ["shutdown", "shutdown", "finished"]
    assert all(result.returncode == 0 for result, _ in runs)
    total_hits: dict[str, int] = {}
    for _, run_hits in runs:
        for path, n in run_hits.items():
            total_hits[path] = total_hits.get(path, 0) + n
    # a graceful stop drains in-flight work, so nothing is ever fetched twice
    assert {p: n for p, n in total_hits.items() if n != 1} == {}
    assert len(total_hits) == SIZE
    urls = [item["url"] for item in crawl.items()]
    assert sorted(urls) == sorted(mockserver.url(page_path(ns, n)) for n in range(SIZE))
    paused = [line for line in runs[0][0].log.splitlines() if "status paused" in line]
    assert paused, "the first Ctrl+C must leave the stage paused"


def test_double_sigint_is_survived_through_the_crash_path(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(page_path(ns, 0))})
    proc = crawl.start()
    # held pages keep the graceful stop draining when the second Ctrl+C comes
    mockserver.arm(ns, proc.pid, signal="INT", at=300, hold="1")
    press_ctrl_c_again(crawl, proc)
    first = crawl.finish(proc)
    mockserver.release(ns)
    assert "forcing unclean shutdown" in first.log
    assert "Spider closed" not in first.log
    second = crawl.run(CHECKPOINT_RESUME="1")
    assert "was still running when its last run stopped" in second.log
    assert second.finish_reason == "finished"
    urls = {item["url"] for item in crawl.items()}
    pages = {mockserver.url(page_path(ns, n)) for n in range(SIZE)}
    assert urls == pages


def test_start_url_pending_at_a_kill_is_fetched_once_on_resume(tmp_path, mockserver):
    ns = mockserver.namespace()
    slow = f"/{ns}/slow/2000/start"
    args = {"start": mockserver.url(page_path(ns, 0)), "also": mockserver.url(slow)}
    crawl = Crawl(tmp_path, "graph", args=args)
    kill_after(crawl, mockserver, ns, 1, path="/start", delay="1")
    assert crawl.ledger("graph")[mockserver.url(slow)] == RequestStatus.PENDING
    before = mockserver.hits(ns)[slow]
    # restored from the frontier, and yielded again by start(): fetched once
    assert crawl.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    assert mockserver.hits(ns)[slow] - before == 1
    assert crawl.ledger("graph")[mockserver.url(slow)] == RequestStatus.DONE
