"""JSON-array and XML feeds, exactly-once: the document is continued, not rewritten."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import signal
import time
import xml.etree.ElementTree as ElementTree

import pytest

from tests.crawling import (
    Crawl,
    graph_crawl,
    graph_page,
    graph_pages,
    run_until_finished,
    was_killed,
)

SIZE = 1500
FANOUT = 5
INTERRUPTIONS = [{"signal": "KILL"}, {"signal": "TERM"}, {"signal": "KILL"}, {"signal": "KILL"},
                 {"signal": "TERM"}, {"signal": "KILL"}]


def document_urls(path, fmt: str) -> list[str]:
    """The url of every item of a JSON array or an XML feed; fails if the
    file is not one valid document."""
    if fmt == "json":
        return [item["url"] for item in json.loads(path.read_bytes())]
    root = ElementTree.fromstring(path.read_bytes())
    assert root.tag == "items"
    return [item.findtext("url") for item in root]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_document_feed_survives_kills_and_stops_as_one_valid_document(
    tmp_path, mockserver, fmt
):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, feed=f"out.{fmt}")
    feed = tmp_path / f"out.{fmt}"
    expected = graph_pages(mockserver, ns, SIZE, FANOUT)

    def after_each(result):
        if result.finish_reason in ("shutdown", "finished"):
            # a graceful stop leaves a valid document, of items not seen twice
            urls = document_urls(feed, fmt)
            assert len(urls) == len(set(urls)) and set(urls) <= set(expected)

    runs = run_until_finished(
        crawl, mockserver, ns, random.Random(f"document-{fmt}"), interruptions=INTERRUPTIONS,
        stage="graph", at=(60, 300), after_each=after_each,
    )
    results = [result for result, _ in runs]
    assert len(results) == len(INTERRUPTIONS) + 1
    assert [was_killed(r) for r in results[:-1]] == [i["signal"] == "KILL" for i in INTERRUPTIONS]
    assert [r.finish_reason for r in results if not was_killed(r)] == (
        ["shutdown", "shutdown", "finished"]
    )
    assert sorted(document_urls(feed, fmt)) == expected  # every item exactly once


def test_a_killed_json_feed_is_an_open_document_that_the_resume_completes(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, 600, FANOUT, feed="out.json")
    feed = tmp_path / "out.json"
    proc = crawl.start()
    mockserver.arm(ns, proc.pid, at=300, signal="KILL")
    assert was_killed(crawl.finish(proc))
    left = feed.read_bytes()
    assert left.startswith(b"[\n{") and not left.rstrip().endswith(b"]")  # as plain Scrapy
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert sorted(document_urls(feed, "json")) == graph_pages(mockserver, ns, 600, FANOUT)


# One callback yields every item: one commit, in export order, so the files of a
# checkpointed crawl and of plain Scrapy can be compared byte for byte.
FORMATS = [
    ("out.json", {}),
    ("out.json", {"FEED_EXPORT_INDENT": "4"}),
    ("out.json", {"FEED_EXPORT_INDENT": "0", "FEED_EXPORT_ENCODING": "utf-8"}),
    ("out.xml", {}),
    ("out.xml", {"FEED_EXPORT_INDENT": "2", "FEED_EXPORT_ENCODING": "latin-1"}),
    ("out.jsonl", {}),
    ("out.csv", {}),
]


@pytest.mark.parametrize("feed, settings", FORMATS)
def test_each_format_writes_what_plain_scrapy_writes(tmp_path, mockserver, feed, settings):
    ns = mockserver.namespace()
    files = {}
    for enable in ("off", "addon"):
        workdir = tmp_path / enable
        workdir.mkdir()
        crawl = Crawl(workdir, "many_items", enable=enable, feed=feed, settings=settings,
                      args={"start": mockserver.url(f"{ns}/status/200"), "items": "25"})
        assert crawl.run().finish_reason == "finished"
        files[enable] = (workdir / feed).read_bytes()
    assert files["addon"] == files["off"]
    assert len(files["off"]) > 100


PLUGINS = {
    "gz": ("scrapy.extensions.postprocessing.GzipPlugin", gzip.decompress),
    "bz2": ("scrapy.extensions.postprocessing.Bz2Plugin", bz2.decompress),
    "xz": ("scrapy.extensions.postprocessing.LZMAPlugin", lzma.decompress),
}


def compressed_feed(name: str, fmt: str, plugin: str) -> dict[str, str]:
    return {"FEEDS": json.dumps({name: {"format": fmt, "postprocessing": [plugin]}})}


def test_a_gzip_feed_survives_kills_as_one_valid_stream(tmp_path, mockserver):
    ns = mockserver.namespace()
    plugin, decompress = PLUGINS["gz"]
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, feed=None,
                        settings=compressed_feed("out.jsonl.gz", "jsonlines", plugin))
    interruptions = [{"signal": "KILL"}] * 4
    runs = run_until_finished(crawl, mockserver, ns, random.Random("gzip"),
                              interruptions=interruptions, stage="graph", at=(60, 300))
    assert [was_killed(result) for result, _ in runs] == [True] * 4 + [False]
    lines = decompress((tmp_path / "out.jsonl.gz").read_bytes()).splitlines()
    assert sorted(json.loads(line)["url"] for line in lines) == graph_pages(
        mockserver, ns, SIZE, FANOUT
    )


@pytest.mark.parametrize("suffix", sorted(PLUGINS))
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_compressed_document_holds_what_plain_scrapy_compresses(tmp_path, mockserver, suffix,
                                                                  fmt):
    ns = mockserver.namespace()
    plugin, decompress = PLUGINS[suffix]
    name = f"out.{fmt}.{suffix}"
    contents = {}
    for enable in ("off", "addon"):
        workdir = tmp_path / enable
        workdir.mkdir()
        crawl = Crawl(workdir, "many_items", enable=enable, feed=None,
                      settings=compressed_feed(name, fmt, plugin),
                      args={"start": mockserver.url(f"{ns}/status/200"), "items": "25"})
        assert crawl.run().finish_reason == "finished"
        contents[enable] = decompress((workdir / name).read_bytes())
    assert contents["addon"] == contents["off"]
    assert len(contents["off"]) > 100


@pytest.mark.parametrize("store_empty", ["True", "False"])
def test_a_resume_that_adds_no_item_to_a_document_leaves_it_valid(tmp_path, mockserver,
                                                                  store_empty):
    # the document's items all come from the first pages: the resume adds none
    ns = mockserver.namespace()
    feeds = {"first.json": {"format": "json", "item_filter": "tests.spiders.common.FirstPagesOnly"},
             "all.jsonl": {"format": "jsonlines"}}
    crawl = graph_crawl(tmp_path, mockserver, ns, 600, FANOUT, feed=None,
                        settings={"FEEDS": json.dumps(feeds), "FEED_STORE_EMPTY": store_empty,
                                  **BREADTH_FIRST})
    proc = crawl.start()
    # Breadth-first, the first 20 pages are among the first 40 fetched. The pages are
    # held from the 300th on, and the crawl killed once the first 20 are committed (so
    # that the resume adds none), however slowly the machine commits.
    mockserver.arm(ns, proc.pid, at=300, signal="CONT", hold="1")
    mockserver.wait_for_hits(ns, 300)  # (the hold has begun)
    first_pages = {mockserver.url(graph_page(ns, 600, FANOUT, n)) for n in range(20)}
    deadline = time.monotonic() + 60
    while not first_pages <= crawl.done_urls("graph"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert was_killed(crawl.finish(proc))
    mockserver.release(ns)
    first = tmp_path / "first.json"
    assert not first.read_bytes().rstrip().endswith(b"]")  # killed: an open document
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert "Stored json feed" not in resumed.log or store_empty == "True"
    pages = graph_pages(mockserver, ns, 600, FANOUT)
    assert sorted(document_urls(first, "json")) == sorted(
        url for url in pages if int(url.rsplit("/", 1)[1]) < 20
    )
    assert len(jsonl_lines(tmp_path / "all.jsonl")) == 600


BREADTH_FIRST = {
    "DEPTH_PRIORITY": "1",
    "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
    "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
}


def jsonl_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]
