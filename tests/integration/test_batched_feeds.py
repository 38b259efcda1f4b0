"""Batched feeds, exactly-once: exactly N items a batch, numbered on across
resumes, no batch file ever written again once full."""

from __future__ import annotations

import json
import random
import re

import pytest

from tests.crawling import graph_crawl, graph_pages, run_until_finished, was_killed

SIZE = 1700
FANOUT = 5
BATCH = 500


def batched_feed(template: str, fmt: str, **options) -> dict[str, str]:
    return {"FEEDS": json.dumps({template: {"format": fmt, "batch_item_count": BATCH,
                                            **options}})}


def batch_files(workdir, suffix: str) -> list:
    files = sorted(workdir.glob(f"items-*.{suffix}"), key=lambda p: int(p.name.split("-")[1]
                                                                         .split(".")[0]))
    assert [f.name for f in files] == [f"items-{n}.{suffix}" for n in range(1, len(files) + 1)]
    return files


def jsonl_urls(path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line)["url"] for line in data.splitlines()]


def test_a_batched_feed_survives_kills_with_exactly_n_items_a_batch(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, feed=None,
                        settings=batched_feed("items-%(batch_id)d.jsonl", "jsonlines"))
    full: dict[str, bytes] = {}  # a full batch, as it was when first seen full

    def after_each(result):
        for path in batch_files(tmp_path, "jsonl"):
            data = path.read_bytes()
            if path.name in full:
                assert data == full[path.name], f"{path.name} was written again once full"
            elif data.count(b"\n") == BATCH and path != batch_files(tmp_path, "jsonl")[-1]:
                full[path.name] = data

    runs = run_until_finished(
        crawl, mockserver, ns, random.Random("batches"), interruptions=[{"signal": "KILL"}] * 4,
        stage="graph", at=(100, 400), after_each=after_each,
    )
    assert [was_killed(result) for result, _ in runs] == [True] * 4 + [False]
    files = batch_files(tmp_path, "jsonl")
    counts = [len(jsonl_urls(path)) for path in files]
    assert counts == [BATCH, BATCH, BATCH, SIZE - 3 * BATCH]
    urls = [url for path in files for url in jsonl_urls(path)]
    assert sorted(urls) == graph_pages(mockserver, ns, SIZE, FANOUT)  # each exactly once
    assert len(full) == 3


def test_batched_json_documents_are_each_valid_after_a_graceful_stop(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, FANOUT, feed=None,
                        settings=batched_feed("items-%(batch_id)d.json", "json"))

    def after_each(result):
        if not was_killed(result):  # every batch file is one valid document
            for path in batch_files(tmp_path, "json"):
                json.loads(path.read_bytes())

    runs = run_until_finished(
        crawl, mockserver, ns, random.Random("json-batches"),
        interruptions=[{"signal": "TERM"}, {"signal": "KILL"}, {"signal": "TERM"}],
        stage="graph", at=(150, 500), after_each=after_each,
    )
    assert [r.finish_reason for r, _ in runs if not was_killed(r)] == [
        "shutdown", "shutdown", "finished"
    ]
    files = batch_files(tmp_path, "json")
    documents = [json.loads(path.read_bytes()) for path in files]
    assert [len(d) for d in documents] == [BATCH, BATCH, BATCH, SIZE - 3 * BATCH]
    assert sorted(item["url"] for d in documents for item in d) == graph_pages(
        mockserver, ns, SIZE, FANOUT
    )


@pytest.mark.parametrize("enable", ["off", "addon"])
def test_an_uninterrupted_batched_crawl_is_what_plain_scrapy_writes(tmp_path, mockserver, enable):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, 1200, FANOUT, feed=None, enable=enable,
                        settings=batched_feed("items-%(batch_id)d.jsonl", "jsonlines"))
    result = crawl.run()
    assert result.finish_reason == "finished"
    files = batch_files(tmp_path, "jsonl")
    assert [len(jsonl_urls(path)) for path in files] == [BATCH, BATCH, 200]
    stored = re.findall(r"Stored jsonlines feed \((\d+) items\) in: (\S+)", result.log)
    assert stored == [(str(count), f"items-{n}.jsonl") for n, count in
                      enumerate([BATCH, BATCH, 200], start=1)]
    assert result.stats["feedexport/success_count/FileFeedStorage"] == 3  # Scrapy's stat


def test_a_reset_moves_the_old_batch_files_aside(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, 1200, FANOUT, feed=None,
                        settings=batched_feed("out/items-%(batch_id)03d.jsonl", "jsonlines"))
    assert crawl.run().finish_reason == "finished"
    first = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    assert sorted(first) == ["items-001.jsonl", "items-002.jsonl", "items-003.jsonl"]
    reset = crawl.run(CHECKPOINT_RESET="1")
    assert reset.finish_reason == "finished"
    assert reset.log.count("held the items of the old checkpoint") == 3
    after = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert [name for name in after if ".bak-" not in name] == sorted(first)
    backups = [name for name in after if ".bak-" in name]
    assert sorted(name.split(".bak-")[0] for name in backups) == sorted(first)
    for path in sorted((tmp_path / "out").glob("items-00?.jsonl")):
        assert len(jsonl_urls(path)) == (BATCH if path.name != "items-003.jsonl" else 200)
