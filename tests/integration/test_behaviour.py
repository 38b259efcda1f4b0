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
    assert plain_result.stats["offsite/filtered"] == 3  # from start(), and 2 from errbacks
    for key in ("item_scraped_count", "downloader/response_count", "retry/count",
                "offsite/filtered"):
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
    # OffsiteMiddleware refuses these in request_scheduled, after our handler saw them
    assert ledger["http://offsite.invalid/from-start"] == RequestStatus.DROPPED
    assert ledger["http://offsite.invalid/from-errback"] == RequestStatus.DROPPED
    summary = crawl.summary("features")
    assert summary.status == "completed" and summary.dropped == 3
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


def test_requests_refused_when_scheduled_are_dropped_when_a_resume_finishes(
    tmp_path, mockserver, feature_runs
):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "features", args={"base": base})
    first = crawl.run(CLOSESPIDER_ITEMCOUNT="2")
    assert first.finish_reason == "closespider_itemcount"
    # an interrupted crawl does not settle them: maybe nothing refused them yet
    assert crawl.ledger("features")["http://offsite.invalid/from-start"] == RequestStatus.PENDING
    second = crawl.run(CHECKPOINT_RESUME="1")
    assert second.finish_reason == "finished"
    assert second.stats["checkpoint/restored"] >= 1
    ledger = crawl.ledger("features")
    assert [url for url, status in ledger.items() if status == RequestStatus.PENDING] == []
    assert ledger["http://offsite.invalid/from-start"] == RequestStatus.DROPPED
    assert ledger["http://offsite.invalid/from-errback"] == RequestStatus.DROPPED
    summary = crawl.summary("features")
    assert summary.status == "completed" and summary.dropped == 3
    # and the two runs together did what one plain crawl does (but for the graph
    # pages' labels, which record the path that found a page first)
    unlabelled = lambda items: [{k: v for k, v in i.items() if k != "label"} for i in items]
    plain, _, plain_base, _ = feature_runs["off"]
    assert canonical(unlabelled(crawl.items()), base) == canonical(
        unlabelled(plain.items()), plain_base
    )


def link_heavy_run(tmp_path, mockserver, enable: str, pages: int = 300, **settings: str):
    """The graph spider on a site whose pages link to 5 new pages and 15 seen ones."""
    ns = mockserver.namespace()
    (tmp_path / enable).mkdir()
    crawl = Crawl(tmp_path / enable, "graph", enable=enable, settings=settings,
                  args={"start": f"{mockserver.url(ns)}/gl/{pages}/20/0"})
    result = crawl.run()
    assert result.finish_reason == "finished"
    hits = {path.split("/", 2)[2]: count for path, count in mockserver.hits(ns).items()}
    # every page fetched once, and the start page once more (a start URL is
    # dont_filter, so the dupefilter lets the first link back to it through)
    assert hits == {f"gl/{pages}/20/{n}": 2 if n == 0 else 1 for n in range(pages)}
    assert len(crawl.items()) == pages + 1
    return crawl, result


def test_links_to_pages_the_dupefilter_has_seen_are_dropped_before_the_scheduler(
    tmp_path, mockserver
):
    _, plain = link_heavy_run(tmp_path, mockserver, "off")
    crawl, checkpointed = link_heavy_run(tmp_path, mockserver, "addon")
    early = checkpointed.stats["checkpoint/duplicates_early"]
    # the same duplicates are dropped: some by us, the rest by Scrapy's dupefilter
    assert early + checkpointed.stats["dupefilter/filtered"] == plain.stats["dupefilter/filtered"]
    # only a first link to a page still queued (not fetched, never dropped as a
    # duplicate) reaches the dupefilter: fewer such links than pages
    assert checkpointed.stats["dupefilter/filtered"] < 300 < early
    # and no duplicate was written to the ledger
    ledger = crawl.ledger("graph")
    assert len(ledger) == 300 and set(ledger.values()) == {RequestStatus.DONE}


def test_a_link_refused_offsite_is_not_taken_for_a_duplicate(tmp_path, mockserver):
    fetched = {}
    for enable in ("off", "addon"):
        ns = mockserver.namespace()
        (tmp_path / enable).mkdir()
        crawl = Crawl(tmp_path / enable, "offsite", enable=enable,
                      args={"base": mockserver.url(ns)})
        result = crawl.run()
        assert result.finish_reason == "finished" and result.stats["offsite/filtered"] == 1
        fetched[enable] = sorted(item["url"].split("?")[1] for item in crawl.items())
    assert fetched["addon"] == fetched["off"] == ["elsewhere", "first", "second"]
    # the refused copy and the allowed one share a key: the fetch settles it
    assert set(crawl.ledger("offsite").values()) == {RequestStatus.DONE}


@pytest.mark.parametrize(
    "settings",
    [{"DUPEFILTER_CLASS": "tests.spiders.common.OwnDupeFilter"}, {"DUPEFILTER_DEBUG": "True"}],
    ids=["own-dupefilter", "dupefilter-debug"],
)
def test_every_duplicate_goes_to_the_dupefilter_when_it_is_not_scrapys_or_logs_them(
    tmp_path, mockserver, settings
):
    _, plain = link_heavy_run(tmp_path, mockserver, "off", pages=100, **settings)
    _, checkpointed = link_heavy_run(tmp_path, mockserver, "addon", pages=100, **settings)
    assert "checkpoint/duplicates_early" not in checkpointed.stats
    assert checkpointed.stats["dupefilter/filtered"] == plain.stats["dupefilter/filtered"]
