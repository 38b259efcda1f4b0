"""Enabling scrapy-resume must not change what a crawl does."""

from __future__ import annotations

import json

import pytest

from scrapy_resume import RequestStatus
from tests.crawling import Crawl


def canonical(items: list[dict], base: str) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True).replace(base, "BASE") for item in items)


@pytest.fixture
def feature_runs(tmp_path_factory, mockserver):
    runs = {}
    for enable in ("off", "addon"):
        ns = mockserver.namespace()
        base = mockserver.url(ns)
        crawl = Crawl(tmp_path_factory.mktemp(enable), "features", enable=enable, args={"base": base})
        result = crawl.run()
        runs[enable] = (crawl, result, base, mockserver.hits(ns))
    return runs


def test_same_items_and_same_downloads_as_plain_scrapy(feature_runs):
    plain, plain_result, plain_base, plain_hits = feature_runs["off"]
    ckpt, ckpt_result, ckpt_base, ckpt_hits = feature_runs["addon"]
    assert plain_result.finish_reason == ckpt_result.finish_reason == "finished"
    plain_items = canonical(plain.items(), plain_base)
    assert canonical(ckpt.items(), ckpt_base) == plain_items
    # sanity: 13 graph pages, flaky, redirect, 404 errback + its request, refused
    # errback + its request, boom (item before the exception), 2 dups, start()
    assert len(plain_items) == 23
    strip = lambda hits, base: {p.split("/", 2)[2]: n for p, n in hits.items()}
    assert strip(ckpt_hits, ckpt_base) == strip(plain_hits, plain_base)
    assert strip(plain_hits, plain_base)["flaky/2/a"] == 3  # two retries, as in plain Scrapy
    assert strip(plain_hits, plain_base)["slow/10/dup"] == 2  # dont_filter twice
    for key in ("item_scraped_count", "downloader/response_count", "retry/count"):
        assert ckpt_result.stats.get(key) == plain_result.stats.get(key), key


def test_ledger_settles_every_request(feature_runs):
    crawl, result, base, _ = feature_runs["addon"]
    ledger = crawl.ledger("features")
    assert [url for url, status in ledger.items() if status == RequestStatus.PENDING] == []
    # a redirect is settled under the original request's key
    assert ledger[f"{base}/redirect/slow/10/target"] == RequestStatus.DONE
    assert f"{base}/slow/10/target" not in ledger
    # a redirect to a URL already seen ends there, as in plain Scrapy, and is not left pending
    assert ledger[f"{base}/redirect/g/13/3/0"] == RequestStatus.DROPPED
    assert ledger[f"{base}/flaky/2/a"] == RequestStatus.DONE
    assert ledger["http://127.0.0.1:1/refused"] == RequestStatus.FAILED
    assert ledger["http://127.0.0.1:1/refused-no-errback"] == RequestStatus.FAILED
    assert ledger[f"{base}/status/200?boom=1"] == RequestStatus.FAILED
    # a 500 that no errback handles is dropped by HttpErrorMiddleware: failed;
    # a 404 that an errback handled is done
    assert ledger[f"{base}/status/500"] == RequestStatus.FAILED
    assert ledger[f"{base}/status/404"] == RequestStatus.DONE
    # the errback's own request was recorded and done
    assert ledger[f"{base}/status/200?after_error=refused"] == RequestStatus.DONE
    summary = crawl.summary("features")
    assert summary.status == "completed" and summary.dropped == 1
    assert summary.counters["items"] == result.stats["item_scraped_count"] == 23
    assert summary.failed == 4


def test_completed_stage_resumed_has_nothing_to_do(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "features", args={"base": mockserver.url(ns)})
    assert crawl.run().finish_reason == "finished"
    before = mockserver.hits(ns)
    again = crawl.run(CHECKPOINT_RESUME="1")
    assert "already completed" in again.log and "nothing to do" in again.log
    assert again.finish_reason == "finished"
    assert mockserver.hits(ns) == before
