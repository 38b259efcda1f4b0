"""Exactly-once file feeds across any number of interruptions."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest

from tests.crawling import (
    Crawl,
    graph_crawl,
    graph_pages,
    kill_after,
    run_until_finished,
    was_killed,
)

SIZE = 2000
FANOUT = 5
START_ITEMS = 5
DEAD_EVERY = 100  # errback items: pages 7, 107, ... link to a dead port
INTERRUPTIONS = (
    [{"signal": "KILL"}] * 5
    + [{"signal": "TERM"}] * 3
    + [{"twice": True}] * 3  # a double Ctrl+C, forced mid-drain
)


def expected_urls(mockserver, ns) -> list[str]:
    pages = graph_pages(mockserver, ns, SIZE, FANOUT)
    dead = [f"http://127.0.0.1:1/dead/{n}" for n in range(SIZE) if n % DEAD_EVERY == 7]
    starts = [f"start:{i}" for i in range(START_ITEMS)]
    return sorted(pages + dead + starts)


def jsonl_urls(path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "a partial last line"
    return sorted(json.loads(line)["url"] for line in data.splitlines())  # a torn line fails here


def csv_rows(path) -> tuple[list[str], list[list[str]]]:
    data = path.read_bytes()
    assert data.endswith(b"\r\n"), "a partial last line"
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    return rows[0], rows[1:]


def feeds_crawl(tmp_path, mockserver, ns, **kwargs) -> Crawl:
    args = {"start_items": str(START_ITEMS), "dead_every": str(DEAD_EVERY)}
    return graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, args=args, feed="out.jsonl",
                       **kwargs)


def test_eleven_interruptions_leave_every_item_exactly_once_in_jsonl_and_csv(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = feeds_crawl(tmp_path, mockserver, ns, more_feeds=("out.csv",))
    runs = run_until_finished(
        crawl, mockserver, ns, random.Random("feeds"), interruptions=INTERRUPTIONS,
        stage="graph", at=(60, 140),
    )
    results = [result for result, _ in runs]
    assert len(results) == len(INTERRUPTIONS) + 1
    assert all(was_killed(r) for r in results[:5])
    assert [r.finish_reason for r in results[5:8]] == ["shutdown"] * 3
    assert all("forcing unclean shutdown" in r.log for r in results[8:11])
    assert results[-1].finish_reason == "finished"

    expected = expected_urls(mockserver, ns)
    assert jsonl_urls(tmp_path / "out.jsonl") == expected  # none lost, none twice, no torn line
    header, rows = csv_rows(tmp_path / "out.csv")
    assert header == ["url", "title", "kind"]
    assert sorted(row[0] for row in rows) == expected  # the header once, every row once
    assert all(len(row) == 3 for row in rows)


def test_overwrite_flag_on_a_resumed_stage_appends(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = feeds_crawl(tmp_path, mockserver, ns, overwrite=True)
    kill_after(crawl, mockserver, ns, 600)
    kept = (tmp_path / "out.jsonl").read_bytes()
    assert kept  # something was committed before the kill
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert "the stage is resumed, so new items are appended" in resumed.log
    assert jsonl_urls(tmp_path / "out.jsonl") == expected_urls(mockserver, ns)
    # -O on a fresh start (RESET) overwrites, as in plain Scrapy
    assert crawl.run(CHECKPOINT_RESET="1").finish_reason == "finished"
    assert jsonl_urls(tmp_path / "out.jsonl") == expected_urls(mockserver, ns)


@pytest.mark.parametrize("damage", ["shorten", "delete"])
def test_a_changed_feed_is_refused(tmp_path, mockserver, damage):
    ns = mockserver.namespace()
    crawl = feeds_crawl(tmp_path, mockserver, ns)
    kill_after(crawl, mockserver, ns, 600)
    feed = tmp_path / "out.jsonl"
    if damage == "shorten":
        feed.write_bytes(feed.read_bytes()[:100])
    else:
        feed.unlink()
    before = mockserver.hits(ns)
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_feed_changed"
    assert ("fewer than the" if damage == "shorten" else "is missing") in refused.log
    assert "CHECKPOINT_RESET=1" in refused.log
    assert mockserver.hits(ns) == before
    if damage == "shorten":
        assert len(feed.read_bytes()) == 100  # left as the user left it


@pytest.mark.parametrize(
    "feed, settings, message",
    [
        ("out.txt", {"FEED_EXPORTERS": json.dumps({"txt": "tests.spiders.common."
                                                    "NumberedLinesExporter"})},
         "uses the 'txt' format, which cannot be resumed exactly-once"),
        (None, {"FEEDS": json.dumps({"out.jsonl": {
            "format": "jsonlines", "postprocessing": ["tests.spiders.common.Rot13"]}})},
         "its post-processing plugin Rot13 is not one of Scrapy's"),
    ],
)
def test_formats_that_cannot_be_exactly_once_are_refused(tmp_path, mockserver, feed, settings,
                                                         message):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/40/3/0")},
                  feed=feed, settings=settings)
    result = crawl.run()
    assert result.finish_reason == "checkpoint_feed_unsupported"
    assert message in result.log
    if "txt'" in message:
        assert "-o out.jsonl" in result.log
    assert mockserver.hits(ns) == {}


def test_a_feed_that_is_not_a_local_file_is_warned_about(tmp_path, mockserver):
    ns = mockserver.namespace()
    feeds = json.dumps({"stdout:": {"format": "jsonlines"}})
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/40/3/0")},
                  feed=None, settings={"FEEDS": feeds})
    result = crawl.run()
    assert "Feed stdout: is not a local file" in result.log
    assert result.finish_reason == "finished"


def test_dropped_items_still_let_their_request_complete(tmp_path, mockserver):
    ns = mockserver.namespace()
    args = {"start": mockserver.url(f"{ns}/g/200/5/0"), "drop_every": "10"}
    crawl = Crawl(tmp_path, "graph", args=args)
    result = crawl.run()
    assert result.finish_reason == "finished"
    summary = crawl.summary("graph")
    assert (summary.done, summary.pending) == (200, 0)
    assert result.stats["item_dropped_count"] == 20
    assert len(crawl.items()) == 180


def test_bytes_written_after_the_last_commit_are_cut_on_resume(tmp_path, mockserver):
    # A kill between the feed write and the checkpoint transaction leaves
    # uncommitted bytes, possibly a torn line, at the end of the file.
    ns = mockserver.namespace()
    crawl = feeds_crawl(tmp_path, mockserver, ns)
    kill_after(crawl, mockserver, ns, 600)
    feed = tmp_path / "out.jsonl"
    tail = b'{"url": "http://uncommitted/1", "kind": "page"}\n{"url": "torn'
    with feed.open("ab") as f:
        f.write(tail)
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert f"removed {len(tail)} bytes written after the last commit" in resumed.log
    assert jsonl_urls(feed) == expected_urls(mockserver, ns)


def test_a_feed_storage_of_the_project_is_refused_with_what_to_do(tmp_path, mockserver):
    ns = mockserver.namespace()
    own = "tests.spiders.common.OwnFileStorage"
    settings = {"FEED_STORAGES": json.dumps({"": own, "file": own})}
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/40/3/0")},
                  settings=settings)
    refused = crawl.run()
    assert refused.finish_reason == "checkpoint_feed_unsupported"
    assert f"is written by {own}, a feed storage of your own" in refused.log
    assert "subclass of scrapy_resume.ResumableFileFeedStorage" in refused.log
    assert "only partly enabled" not in refused.log
    assert mockserver.hits(ns) == {}
    accepted = crawl.run(CHECKPOINT_UNPROTECTED_FEEDS="1")
    assert accepted.finish_reason == "finished"
    assert "[scrapy_resume.components.extension] WARNING: Feed" in accepted.log
    assert len(crawl.items()) == 40
