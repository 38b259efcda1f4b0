"""The engine's pieces on their own: completion tracking and batch building."""

from __future__ import annotations

import pickle

import scrapy
from scrapy.utils.test import get_crawler

from scrapy_resume.engine.batching import BatchBuilder
from scrapy_resume.engine.completion import Completion, Outcome, StartItems
from scrapy_resume.engine.duplicates import EarlyDuplicates
from scrapy_resume.engine.itemids import ItemIds
from scrapy_resume.engine.requestmeta import KEY_META, ORIGIN_META
from scrapy_resume.store.records import RequestStatus


class Watcher:
    """What a completion reports to, recording the checks it asks for."""

    early_duplicates = None

    def __init__(self) -> None:
        self.checks: list[Completion] = []
        self.item_ids = ItemIds()

    def check_later(self, completion: Completion) -> None:
        self.checks.append(completion)


class Shop(scrapy.Spider):
    name = "shop"

    def parse(self, response):
        pass

    def parse_item(self, response):
        pass


def test_a_tracker_is_complete_when_its_chain_ended_and_every_output_settled():
    watcher = Watcher()
    completion = Completion(watcher, b"parent", scrapy.Request("http://shop/"), source=object())
    child = scrapy.Request("http://shop/a")
    outputs = list(completion.iterate([child, {"name": "an item"}]))
    assert outputs == [child, {"name": "an item"}]
    assert child.meta[ORIGIN_META] == (completion, 0)  # the request knows its parent
    assert not completion.complete and watcher.checks == []  # two outputs in flight
    completion.output_settled()
    assert not completion.complete and watcher.checks == []
    completion.output_settled()
    assert completion.complete and watcher.checks == [completion]


def test_a_callback_that_raises_fails_its_request():
    watcher = Watcher()
    completion = Completion(watcher, b"k", scrapy.Request("http://shop/"), source=object())
    completion.failed_with("ValueError: boom")
    assert (completion.status, completion.error) == (RequestStatus.FAILED, "ValueError: boom")
    assert watcher.checks == [completion]


def builder() -> BatchBuilder:
    crawler = get_crawler(Shop)
    crawler.spider = Shop.from_crawler(crawler)
    return BatchBuilder(crawler, settled_before=lambda key: False)


def keyed(url: str, key: bytes, **kwargs) -> scrapy.Request:
    return scrapy.Request(url, meta={KEY_META: key}, **kwargs)


def test_a_batch_writes_a_child_settled_with_its_parent_once_without_its_copy():
    batches = builder()
    spider = batches.crawler.spider
    parent = Completion(Watcher(), b"p", keyed("http://shop/", b"p"), object())
    quick = keyed("http://shop/quick", b"q", callback=spider.parse_item)
    slow = keyed("http://shop/slow", b"s", callback=spider.parse_item)
    batches.new_request(quick, parent)
    batches.new_request(slow, parent)
    done_child = Completion(Watcher(), b"q", quick, object())
    batches.completed(parent)
    batches.completed(done_child)  # finished in the same commit interval
    batch = batches.build(StartItems())
    written = {new.key: new for new in batch.new_requests}
    assert written[b"q"].blob is None  # settled in this batch: its copy is never needed
    stored = pickle.loads(written[b"s"].blob)
    assert (stored["url"], stored["callback"]) == ("http://shop/slow", "parse_item")
    assert [s.key for s in batch.settlements] == [b"p", b"q"]  # in completion order
    assert batch.counters == {"done": 2}
    assert batch.state == {"callbacks": ["parse_item"]}  # a resume checks the spider has it


def test_an_outcome_settles_like_a_tracker_with_no_output():
    batches = builder()
    request = keyed("http://shop/gone", b"g")
    batches.completed(Outcome(b"g", request, RequestStatus.FAILED, "DNSLookupError: x", 3))
    batch = batches.build(StartItems())
    (settlement,) = batch.settlements
    assert (settlement.key, settlement.status, settlement.error, settlement.attempts) == (
        b"g", RequestStatus.FAILED, "DNSLookupError: x", 3
    )
    assert pickle.loads(settlement.blob)["url"] == "http://shop/gone"  # kept, to be retried
    assert batch.counters == {"failed": 1}


def test_a_duplicate_dropped_at_once_is_forgotten():
    batches = builder()
    parent = Completion(Watcher(), b"p", keyed("http://shop/", b"p"), object())
    link = keyed("http://shop/seen", b"x")
    batches.new_request(link, parent)
    batches.drop_new_request(link, parent)
    assert parent.children == []


def test_early_duplicates_drop_only_what_the_dupefilter_is_known_to_have_seen():
    duplicates = EarlyDuplicates.for_crawler(get_crawler(Shop))
    assert duplicates is not None
    fetched, dropped = scrapy.Request("http://shop/a"), scrapy.Request("http://shop/b")
    duplicates.fetched_through_scheduler(fetched)
    duplicates.fetched_through_scheduler(scrapy.Request("http://shop/c", dont_filter=True))
    duplicates.dropped_by_dupefilter(duplicates.fingerprint(dropped))
    links = ["http://shop/a", "http://shop/b", "http://shop/c", "http://shop/new"]
    assert [duplicates.drops(scrapy.Request(url)) for url in links] == [True, True, False, False]
    # a link that asks to be fetched again, and an item, always pass
    assert not duplicates.drops(scrapy.Request("http://shop/a", dont_filter=True))
    assert not duplicates.drops({"url": "http://shop/a"})
    assert duplicates.dropped == 2


def test_early_duplicates_stay_off_where_dropping_early_could_change_the_crawl():
    assert EarlyDuplicates.for_crawler(get_crawler(Shop, {"DUPEFILTER_DEBUG": True})) is None
    assert EarlyDuplicates.for_crawler(
        get_crawler(Shop, {"DUPEFILTER_CLASS": "scrapy.dupefilters.BaseDupeFilter"})
    ) is None


def test_item_ids_are_the_request_key_and_the_position_among_its_items():
    watcher = Watcher()
    request = scrapy.Request("https://example.com/a")
    completion = Completion(watcher, b"\x01\x02", request, source=object())
    errback = Completion(watcher, b"\x01\x02", request, source=object(), namespace=b"e")
    first, link, second, third = {"n": 1}, scrapy.Request("https://example.com/b"), {"n": 2}, {}
    for output in (first, link, second, third):
        completion.tag(output)
    late = {"n": 0}
    errback.tag(late)
    ids = watcher.item_ids
    assert [ids.id_of(item, None) for item in (first, second, third, late)] == [
        "0102-c0", "0102-c1", "0102-c2", "0102-e0"]
    assert ids.url_of(second) == "https://example.com/a"

    assert ids.settled(second, completion) == 1
    # a pipeline returned a new object for the first item: the oldest in flight settles
    assert ids.settled({"n": 1, "price": 3}, completion) == 0
    assert ids.settled(third, completion) == 2
    assert ids.settled({}, completion) is None  # nothing left in flight
    assert ids.in_flight.keys() == {id(late)}


def test_an_item_the_spider_did_not_yield_gets_an_id_from_its_content(caplog):
    ids = ItemIds()
    assert ids.id_of({"a": 1, "b": 2}, None) == ids.id_of({"b": 2, "a": 1}, None)
    assert ids.id_of({"a": 1}, None).startswith("content-")
    assert ids.id_of({"a": 1}, 4) == "start-4"
    assert caplog.text.count("did not see the spider yield") == 1  # warned once


def jar_with(*cookies: tuple[str, str, float | None]) -> dict:
    """A jar's contents (engine/cookiejars.py) holding (name, value, expires) cookies."""
    from http.cookiejar import Cookie

    from scrapy_resume.engine.cookiejars import jar_contents

    return jar_contents([
        Cookie(0, name, value, None, False, "example.com", False, False, "/", True, False,
               expires, expires is None, None, None, {"HttpOnly": None})
        for name, value, expires in cookies
    ])


def test_cookie_changes_commit_with_their_request_and_an_older_one_never_undoes_a_newer():
    from scrapy_resume.engine.cookiejars import SessionCookies

    cookies = SessionCookies()
    empty = jar_with()
    first, second = jar_with(("session", "one", None)), jar_with(("session", "two", None))
    cookies.record(b"A", 1, empty, first)  # A's response set session=one
    cookies.record(b"B", 1, first, second)  # then B's set session=two
    assert cookies.state_to_commit(now=0) is None  # neither request is settled yet
    cookies.settled(b"B")
    cookies.settled(b"A")  # settles last, but its change is the older one
    (jar, (stored,)), = cookies.state_to_commit(now=0)["jars"]
    assert (jar, stored["name"], stored["value"], stored["rest"]) == (
        1, "session", "two", {"HttpOnly": None})
    assert cookies.state_to_commit(now=0) is None  # nothing new to write

    # a deletion (an expiry sent by the server) commits too; and a resume leaves out
    # the cookies that expired while the crawl was down
    later = jar_with(("session", "two", None), ("remember", "x", 100.0))
    cookies.record(None, 1, second, later)  # from a request the ledger does not track
    restored = SessionCookies()
    restored.load(cookies.state_to_commit(now=50))
    names, expired = restored.restorable(now=50)
    assert (sorted(c.name for _, c in names), expired) == (["remember", "session"], 0)
    names, expired = restored.restorable(now=150)
    assert ([(jar, c.name, c.value) for jar, c in names], expired) == ([(1, "session", "two")], 1)
    cookies.record(b"C", 1, later, second)
    cookies.settled(b"C")
    assert [c["name"] for c in cookies.state_to_commit(now=50)["jars"][0][1]] == ["session"]


def test_a_cookiejar_key_that_json_cannot_store_is_not_checkpointed():
    from scrapy_resume.engine.cookiejars import SessionCookies

    cookies = SessionCookies()
    cookies.record(b"A", ("account", 2), jar_with(), jar_with(("s", "v", None)))
    cookies.record(b"A", object(), jar_with(), jar_with(("s", "v", None)))
    cookies.settled(b"A")
    restored = SessionCookies()
    restored.load(cookies.state_to_commit(now=0))
    assert [(jar, c.name) for jar, c in restored.restorable(now=0)[0]] == [(("account", 2), "s")]
