"""Runs that are refused, cannot open their stage, or fail to close it: the
user's feed and checkpoint stay as they were, and the next resume still ends
with every item exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from tests.crawling import Crawl, graph_crawl, graph_page, graph_pages, kill_after
from tests.faults import STRACE

SIZE = 300
FANOUT = 3


def site(mockserver, ns: str, size: int = SIZE) -> str:
    return mockserver.url(graph_page(ns, size, FANOUT))


def pages(mockserver, ns: str, size: int = SIZE) -> list[str]:
    return graph_pages(mockserver, ns, size, FANOUT)


def feed_urls(path) -> list[str]:
    """Every line of a JSON-lines feed, parsed: a torn line or a NUL byte fails here."""
    data = path.read_bytes()
    assert data.endswith(b"\n") and b"\0" not in data
    return sorted(json.loads(line)["url"] for line in data.splitlines())


def killed_crawl(tmp_path, mockserver, **kwargs) -> tuple[Crawl, str, bytes]:
    """A crawl with -O, SIGKILLed half-way: the crawl, its namespace, its feed's bytes."""
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, overwrite=True, **kwargs)
    kill_after(crawl, mockserver, ns, SIZE // 2)
    kept = crawl.feed.read_bytes()
    assert kept  # something was committed before the kill
    return crawl, ns, kept


def test_a_refused_run_leaves_the_feed_as_it_was(tmp_path, mockserver):
    crawl, ns, kept = killed_crawl(tmp_path, mockserver)
    hits = mockserver.hits(ns)
    refused = crawl.run()  # the same command again, without CHECKPOINT_RESUME
    assert refused.finish_reason == "checkpoint_exists"
    assert crawl.feed.read_bytes() == kept  # -O did not wipe it
    assert mockserver.hits(ns) == hits
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns)
    # a completed stage: "nothing to do", and the feed stays whole
    finished = crawl.feed.read_bytes()
    again = crawl.run(CHECKPOINT_RESUME="1")
    assert "nothing to do" in again.log
    assert crawl.feed.read_bytes() == finished


@pytest.mark.parametrize("frontier_memory", ["2000", "5"])
def test_a_second_process_refused_by_the_lock_leaves_the_live_feed_alone(
    tmp_path, mockserver, frontier_memory
):
    """With 5 requests in memory, the live run's frontier is in its spill files,
    which the refused run must not touch either."""
    ns = mockserver.namespace()
    size = 2000  # far from finished when frozen, however fast the machine
    settings = {"CHECKPOINT_FRONTIER_MEMORY": frontier_memory}
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns, size)}, overwrite=True,
                  settings=settings)
    first = crawl.start()
    mockserver.wait_for_hits(ns, 60)  # crawling, and committing its items
    os.kill(first.pid, signal.SIGSTOP)  # frozen mid-crawl, holding the stage and its feed
    spill = tmp_path / "checkpoints" / "graph.spill"
    try:
        live = crawl.feed.read_bytes()
        spilled = spill_files(spill)
        assert (spilled != {}) == (frontier_memory == "5")
        second = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns, size)},
                       overwrite=True, settings=settings)
        refused = second.run()  # overlapping cron runs
        assert refused.finish_reason == "checkpoint_locked"
        assert f"pid {first.pid}" in refused.log
        assert crawl.feed.read_bytes() == live
        assert spill_files(spill) == spilled
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert crawl.finish(first).finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns, size)  # no NUL, no line lost


def spill_files(directory) -> dict[str, bytes]:
    """The contents of a run's spill directory (engine/spill.py), by relative path."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_checkpoint_dir_that_cannot_be_used_stops_before_any_request(tmp_path, mockserver):
    ns = mockserver.namespace()
    not_a_directory = tmp_path / "checkpoints"
    not_a_directory.write_text("a file where the directory should be")
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns)}, overwrite=True)
    crawl.feed.write_text('{"url": "kept"}\n')
    result = crawl.run()
    assert result.finish_reason == "checkpoint_unavailable"
    assert f"Cannot open the checkpoint of stage graph in {not_a_directory}" in result.log
    assert "CHECKPOINT_DIR naming a file" in result.log
    assert "Error caught on signal handler" not in result.log
    assert mockserver.hits(ns) == {}
    assert crawl.feed.read_text() == '{"url": "kept"}\n'
    assert not_a_directory.read_text() == "a file where the directory should be"


def test_a_failed_final_commit_is_a_failed_commit_and_the_resume_repairs_it(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns)}, settings={
        # no commit before the close: the final one holds every item
        "CHECKPOINT_COMMIT_INTERVAL": "1000",
    })
    stage_file = crawl.store_path("graph")
    closed = crawl.run(TEST_LOCK_AT_CLOSE=str(stage_file))
    assert "Checkpoint commit failed while closing" in closed.log
    assert "-s CHECKPOINT_RESUME=1" in closed.log
    assert "Error caught on signal handler" not in closed.log
    assert closed.stats["checkpoint/commit_errors"] == 1
    assert crawl.summary("graph").status == "running"  # as its last commit left it
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert "was still running when its last run stopped" in resumed.log
    assert resumed.finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns)


def test_a_failed_commit_when_the_feed_opens_stops_the_crawl_and_the_resume_repairs_it(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns)}, settings={
        "CHECKPOINT_COMMIT_INTERVAL": "1000",
    })
    # the first item opens the feed, whose starting size is committed at once
    stopped = crawl.run(TEST_LOCK_AT_FIRST_PAGE=str(crawl.store_path("graph")))
    assert stopped.finish_reason == "checkpoint_write_error"
    assert stopped.log.count("Checkpoint commit failed") == 1
    assert "Error caught on signal handler" not in stopped.log
    assert crawl.items() == []
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns)


def test_a_resume_must_write_to_the_feed_the_stage_committed_to(tmp_path, mockserver):
    crawl, ns, kept = killed_crawl(tmp_path, mockserver)
    hits = mockserver.hits(ns)
    for other in ("other.jsonl", None):  # another file, or no feed at all
        elsewhere = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns)}, feed=other)
        refused = elsewhere.run(CHECKPOINT_RESUME="1")
        assert refused.finish_reason == "checkpoint_feed_changed"
        assert f"committed its items to {crawl.feed}" in refused.log
        assert "-o items.jsonl" in refused.log  # the way to continue
    assert not (tmp_path / "other.jsonl").exists()
    assert crawl.feed.read_bytes() == kept
    assert mockserver.hits(ns) == hits
    # a second feed added on resume is allowed, with a warning
    both = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns)},
                 more_feeds=("new.jsonl",))
    result = both.run(CHECKPOINT_RESUME="1")
    assert result.finish_reason == "finished"
    assert "is new to stage graph: it will hold only the items of requests done from now" in (
        result.log
    )
    assert feed_urls(crawl.feed) == pages(mockserver, ns)


@pytest.mark.parametrize("how", ["copy", "move"])
def test_a_copied_or_moved_project_resumes_its_own_feed(tmp_path, mockserver, how):
    original = tmp_path / "project"
    original.mkdir()
    crawl, ns, kept = killed_crawl(original, mockserver, relative=True)
    original_feed = crawl.feed.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    if how == "copy":
        shutil.copytree(original, elsewhere, symlinks=True)
    else:
        original.rename(elsewhere)
    moved = Crawl(elsewhere, "graph", args={"start": site(mockserver, ns)}, overwrite=True,
                  relative=True)
    assert moved.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    assert feed_urls(moved.feed) == pages(mockserver, ns)
    if how == "copy":  # the original folder was not touched
        assert crawl.feed.read_bytes() == original_feed
        assert crawl.store_path("graph").exists()
        assert crawl.summary("graph").status == "running"


def test_a_reset_with_a_feed_starts_a_new_file_and_keeps_the_old_one(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns, 40)})
    assert crawl.run().finish_reason == "finished"
    old = crawl.feed.read_bytes()
    reset = crawl.run(CHECKPOINT_RESET="1")
    assert reset.finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns, 40)  # each item once, not twice
    backups = list(tmp_path.glob("items.jsonl.bak-*"))
    assert [b.read_bytes() for b in backups] == [old]
    assert f"moved to {backups[0]}" in reset.log


RENAMED = '''
from tests.spiders.graph import GraphSpider


class Renamed(GraphSpider):
    """The graph spider, whose links go to a callback named {name}."""

    def parse(self, response):
        for output in super().parse(response):
            if hasattr(output, "replace"):
                output = output.replace(callback=self.{name})
            yield output

    def {name}(self, response):
        yield from self.parse(response)
'''


def test_a_resume_after_a_callback_was_renamed_is_refused_by_name(tmp_path, mockserver):
    versions = {}
    for version, body in [("v1", RENAMED.format(name="parse_item")),
                          ("v2", RENAMED.format(name="parse_product")),
                          ("v3", RENAMED.format(name="parse_product")
                           + "\n    parse_item = parse_product  # an alias\n")]:
        versions[version] = tmp_path / f"renamed_{version}.py"
        versions[version].write_text(body)
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns, 2000)})
    crawl.spider_file = versions["v1"]
    kill_after(crawl, mockserver, ns, 300)
    pending = crawl.summary("graph").pending
    assert pending > 0
    kept, hits = crawl.feed.read_bytes(), mockserver.hits(ns)
    crawl.spider_file = versions["v2"]
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_callback_missing"
    assert f"callbacks the spider no longer has: parse_item ({pending:,} requests)" in refused.log
    assert "Traceback" not in refused.log
    assert (crawl.feed.read_bytes(), mockserver.hits(ns)) == (kept, hits)
    crawl.spider_file = versions["v3"]
    assert crawl.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns, 2000)


@pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")
def test_a_feed_that_cannot_be_cut_back_stops_the_resume_before_any_request(
    tmp_path, mockserver
):
    crawl, ns, kept = killed_crawl(tmp_path, mockserver)
    with crawl.feed.open("ab") as torn:
        torn.write(b'{"url": "torn by the kill"')  # to be cut back by the resume
    hits = mockserver.hits(ns)
    # the feed's truncation fails (EIO), and only that one: -P limits strace to the file
    eio = [STRACE, "-f", "-qq", "-o", os.devnull, "-P", str(crawl.feed),
           "-e", "trace=ftruncate", "-e", "inject=ftruncate:error=EIO"]
    failed = crawl.run(prefix=eio, CHECKPOINT_RESUME="1")
    assert failed.finish_reason == "checkpoint_unavailable"
    assert "Input/output error" in failed.log
    assert mockserver.hits(ns) == hits
    assert crawl.summary("graph").status == "running"  # as the kill left it
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert feed_urls(crawl.feed) == pages(mockserver, ns)


def test_a_completed_stage_whose_feed_was_moved_has_nothing_to_do(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": site(mockserver, ns, 40)})
    assert crawl.run().finish_reason == "finished"
    crawl.feed.rename(tmp_path / "uploaded.jsonl")  # the user took the finished output away
    again = crawl.run(CHECKPOINT_RESUME="1")
    assert again.finish_reason == "finished" and "nothing to do" in again.log
    assert "ERROR" not in again.log
    assert not crawl.feed.exists()
