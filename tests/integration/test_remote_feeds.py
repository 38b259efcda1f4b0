"""Remote batched feeds, exactly-once, against a real FTP server: each batch
uploaded once it is complete and committed, never uploaded again by a
resume, and kept (not lost) when its upload fails."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from scrapy_resume.engine.uploads import STATE as UPLOADS
from tests.crawling import graph_crawl, graph_pages, run_until_finished, was_killed
from tests.ftpserver import FTPServer

SIZE = 1700
FANOUT = 5
BATCH = 500


@pytest.fixture
def ftp(tmp_path):
    root = tmp_path / "ftp"
    root.mkdir()
    with FTPServer(root) as server:
        yield server


def ftp_crawl(tmp_path, mockserver, ns, ftp, size, **kwargs):
    feed = {ftp.uri("out/items-%(batch_id)d.jsonl"): {"format": "jsonlines",
                                                     "batch_item_count": BATCH}}
    return graph_crawl(tmp_path, mockserver, ns, size, FANOUT, feed=None,
                       settings={"FEEDS": json.dumps(feed)}, **kwargs)


def uploaded_batches(ftp) -> dict[str, list[str]]:
    """name -> the page URLs in each batch file on the server."""
    out = ftp.root / "out"
    files = sorted(out.iterdir(), key=lambda p: int(p.stem.split("-")[1])) if out.exists() else []
    return {path.name: [json.loads(line)["url"] for line in path.read_bytes().splitlines()]
            for path in files}


def upload_records(crawl) -> dict[str, dict]:
    store = crawl.open_store("graph")
    try:
        return store.state().get(UPLOADS, {})
    finally:
        store.close()


def staged_files(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "checkpoints").glob("graph.uploads/*/*"))


def test_a_batched_ftp_feed_survives_kills_uploading_each_batch_once(
    tmp_path, mockserver, ftp
):
    ns = mockserver.namespace()
    crawl = ftp_crawl(tmp_path, mockserver, ns, ftp, SIZE)
    # a kill between the end of an upload and its record (milliseconds) is the
    # one case a resume uploads a batch again: counted here, from the stage
    unrecorded: Counter[str] = Counter()
    seen: dict[str, bytes] = {}

    def after_each(result):
        records = {f"out/{entry['uri'].rsplit('/', 1)[1]}": entry["uploaded"]
                   for entry in upload_records(crawl).values()}
        for name in ftp.received:
            data = (ftp.root / name).read_bytes()
            assert seen.setdefault(name, data) == data, f"{name} was uploaded changed"
            if was_killed(result) and not records.get(name):
                unrecorded[name] += 1

    runs = run_until_finished(
        crawl, mockserver, ns, random.Random("ftp-batches"),
        interruptions=[{"signal": "KILL"}] * 4, stage="graph", at=(100, 400),
        after_each=after_each,
    )
    assert [was_killed(result) for result, _ in runs] == [True] * 4 + [False]
    batches = uploaded_batches(ftp)
    assert list(batches) == [f"items-{n}.jsonl" for n in (1, 2, 3, 4)]
    assert [len(urls) for urls in batches.values()] == [BATCH, BATCH, BATCH, SIZE - 3 * BATCH]
    urls = sorted(url for batch in batches.values() for url in batch)
    assert urls == graph_pages(mockserver, ns, SIZE, FANOUT)  # each exactly once
    assert dict(ftp.received) == {f"out/{name}": 1 + unrecorded[f"out/{name}"]
                                  for name in batches}
    assert all(entry["uploaded"] for entry in upload_records(crawl).values())
    assert staged_files(tmp_path) == []  # removed once uploaded
    # the URIs the stage records carry no password
    assert "s3cret" not in json.dumps(upload_records(crawl))


def test_a_failed_upload_is_kept_and_uploaded_by_the_resume(tmp_path, mockserver, ftp):
    ns = mockserver.namespace()
    crawl = ftp_crawl(tmp_path, mockserver, ns, ftp, 1200)
    ftp.allow_uploads(False)
    first = crawl.run()
    assert first.finish_reason == "finished"
    assert "3 batch file(s) could not be uploaded" in first.log
    assert crawl.summary("graph").status == "paused"
    assert uploaded_batches(ftp) == {}
    assert staged_files(tmp_path) == ["1-items-1.jsonl", "2-items-2.jsonl", "3-items-3.jsonl"]
    assert first.stats["checkpoint/feed_upload_errors"] == 5  # 2 full batches, then 3 at end

    ftp.allow_uploads(True)
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    assert crawl.summary("graph").status == "completed"
    batches = uploaded_batches(ftp)
    assert [len(urls) for urls in batches.values()] == [BATCH, BATCH, 200]
    assert sorted(u for b in batches.values() for u in b) == graph_pages(
        mockserver, ns, 1200, FANOUT
    )
    assert dict(ftp.received) == {f"out/items-{n}.jsonl": 1 for n in (1, 2, 3)}
    assert resumed.stats["checkpoint/feed_batches_uploaded"] == 3
    assert staged_files(tmp_path) == []


def test_a_reset_keeps_the_batches_an_old_stage_could_not_upload(tmp_path, mockserver, ftp):
    ns = mockserver.namespace()
    crawl = ftp_crawl(tmp_path, mockserver, ns, ftp, 1200)
    ftp.allow_uploads(False)
    assert crawl.run().finish_reason == "finished"
    old = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").glob("graph.uploads/*/*")}
    ftp.allow_uploads(True)
    reset = crawl.run(CHECKPOINT_RESET="1")
    assert reset.finish_reason == "finished"
    assert reset.log.count("held the items of the old checkpoint") == 3
    kept = {p.name.split(".bak-")[0]: p.read_bytes()
            for p in (tmp_path / "checkpoints").glob("graph.uploads/*/*.bak-*")}
    assert kept == old  # the old stage's batches, as they were
    assert [len(urls) for urls in uploaded_batches(ftp).values()] == [BATCH, BATCH, 200]
    assert dict(ftp.received) == {f"out/items-{n}.jsonl": 1 for n in (1, 2, 3)}


@pytest.mark.parametrize("enable", ["off", "addon"])
def test_an_uninterrupted_ftp_crawl_uploads_what_plain_scrapy_uploads(
    tmp_path, mockserver, ftp, enable
):
    ns = mockserver.namespace()
    result = ftp_crawl(tmp_path, mockserver, ns, ftp, 1200, enable=enable).run()
    assert result.finish_reason == "finished"
    batches = uploaded_batches(ftp)
    assert list(batches) == ["items-1.jsonl", "items-2.jsonl", "items-3.jsonl"]
    assert [len(urls) for urls in batches.values()] == [BATCH, BATCH, 200]
    stored = re.findall(r"Stored jsonlines feed \((\d+) items\) in: \S+/out/(\S+)", result.log)
    assert stored == [(str(count), f"items-{n}.jsonl") for n, count in
                      enumerate([BATCH, BATCH, 200], start=1)]
    assert result.stats["feedexport/success_count/FTPFeedStorage"] == 3  # Scrapy's stat
    assert dict(ftp.received) == {f"out/{name}": 1 for name in batches}


def test_a_remote_feed_without_batches_is_warned(tmp_path, mockserver, ftp):
    ns = mockserver.namespace()
    feed = {ftp.uri("out/items.jsonl"): {"format": "jsonlines"}}
    crawl = graph_crawl(tmp_path, mockserver, ns, 50, FANOUT, feed=None,
                        settings={"FEEDS": json.dumps(feed)})
    result = crawl.run()
    assert result.finish_reason == "finished"
    assert "is uploaded as a whole when the crawl closes" in result.log
    assert "Give it batches" in result.log
    assert len((ftp.root / "out" / "items.jsonl").read_bytes().splitlines()) == 50


@pytest.mark.parametrize("batched", [True, False])
def test_a_refused_run_uploads_nothing(tmp_path, mockserver, ftp, batched):
    # plain Scrapy would store an empty feed at close, over the uploaded one
    ns = mockserver.namespace()
    feed = {ftp.uri("out/items-%(batch_id)d.jsonl" if batched else "out/items.jsonl"): {
        "format": "jsonlines", "store_empty": True, **({"batch_item_count": 20} if batched else {})
    }}
    crawl = graph_crawl(tmp_path, mockserver, ns, 50, FANOUT, feed=None,
                        settings={"FEEDS": json.dumps(feed)})
    assert crawl.run().finish_reason == "finished"
    uploaded = {p.name: p.read_bytes() for p in (ftp.root / "out").iterdir()}
    received = dict(ftp.received)
    refused = crawl.run()  # no CHECKPOINT_RESUME: the stage exists
    assert refused.finish_reason == "checkpoint_exists"
    assert {p.name: p.read_bytes() for p in (ftp.root / "out").iterdir()} == uploaded
    assert dict(ftp.received) == received
    assert sum(len(data.splitlines()) for data in uploaded.values()) == 50
