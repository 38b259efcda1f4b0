"""A frontier mostly on disk: real crawls with a tiny CHECKPOINT_FRONTIER_MEMORY,
so that almost every scheduled request waits in the spill files, compared with
plain Scrapy, and killed and resumed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.crawling import Crawl, graph_crawl, graph_pages, run_until_finished, was_killed

ON_DISK = {"CHECKPOINT_FRONTIER_MEMORY": "10"}
BFS = {"DEPTH_PRIORITY": "1", "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
       "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue"}


def tree_crawl(workdir, mockserver, enable: str, settings: dict) -> tuple[Crawl, str]:
    """The wide site as a tree of 5 links a page (every link a new page), to depth 3."""
    ns = mockserver.namespace()
    workdir.mkdir()
    crawl = Crawl(workdir, "graph", enable=enable,
                  args={"start": mockserver.url(f"{ns}/wide/5/0"), "with_depth": "1"},
                  settings={"DEPTH_LIMIT": "3", "CONCURRENT_REQUESTS": "1", **settings})
    return crawl, ns


def tree_pages(mockserver, ns, depth: int = 3) -> list[str]:
    pages, level = [0], [0]
    for _ in range(depth):
        level = [c for n in level for c in range(n * 5 + 1, n * 5 + 6)]
        pages += level
    return sorted(mockserver.url(f"{ns}/wide/5/{n}") for n in pages)


@pytest.mark.parametrize("order", ["depth-first", "breadth-first"])
def test_a_frontier_on_disk_crawls_the_depth_limited_pages_plain_scrapy_crawls(
    tmp_path, mockserver, order
):
    settings = BFS if order == "breadth-first" else {}
    found = {}
    for enable in ("off", "addon"):
        crawl, ns = tree_crawl(tmp_path / enable, mockserver, enable,
                               {**settings, **(ON_DISK if enable == "addon" else {})})
        result = crawl.run()
        assert result.finish_reason == "finished", result.log[-3000:]
        items = crawl.items()
        urls = Counter(item["url"] for item in items)
        assert sorted(urls) == tree_pages(mockserver, ns) and set(urls.values()) == {1}
        depths = [item["depth"] for item in items]
        found[enable] = (result, depths)
    ours, plain = found["addon"], found["off"]
    assert ours[0].stats["checkpoint/frontier_on_disk"] > 50  # the frontier went to disk
    assert "checkpoint/frontier_on_disk" not in plain[0].stats
    assert Counter(ours[1]) == Counter(plain[1]) == {0: 1, 1: 5, 2: 25, 3: 125}
    if order == "breadth-first":  # each depth crawled before the next one
        assert ours[1] == sorted(ours[1]) and plain[1] == sorted(plain[1])


def test_sigkills_while_the_frontier_is_mostly_on_disk_lose_nothing(tmp_path, mockserver):
    ns = mockserver.namespace()
    size = 3000  # 50 links a page: the whole site is found after 60 pages
    crawl = graph_crawl(tmp_path, mockserver, ns, size, 50, settings={
        "CHECKPOINT_FRONTIER_MEMORY": "100"})
    spill = tmp_path / "checkpoints" / "graph.spill"
    left_on_disk = []  # after each run: did it leave requests in its spill files?

    def after_each(result):
        left_on_disk.append(spill.exists() and any(p.is_file() for p in spill.rglob("*")))

    runs = run_until_finished(crawl, mockserver, ns, random.Random("frontier on disk"),
                              interruptions=[{"signal": "KILL"}] * 3, stage="graph",
                              at=(200, 900), after_each=after_each)
    assert len(runs) == 4 and all(was_killed(result) for result, _ in runs[:-1])
    assert runs[-1][0].finish_reason == "finished"
    # the first kill came while the frontier was on disk; the finished run cleaned up
    assert left_on_disk[0] is True and left_on_disk[-1] is False
    urls = Counter(item["url"] for item in crawl.items())
    assert {url for url, n in urls.items() if n > 1} == set()
    assert sorted(urls) == graph_pages(mockserver, ns, size, 50)
