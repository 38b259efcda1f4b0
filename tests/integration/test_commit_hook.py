"""The commit hook and item ids, in-process (pytest-twisted, asyncio reactor):
what a pipeline is told, and when, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import scrapy
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler

from scrapy_resume import Addon, RequestStatus, item_id
from scrapy_resume.signals import checkpoint_before_commit


class PagesSpider(scrapy.Spider):
    """Two items a page; start() yields two items too, and a dead link's errback one."""

    name = "pages"

    def __init__(self, urls, dead="", **kwargs):
        super().__init__(**kwargs)
        self.urls, self.dead = urls, dead

    async def start(self):
        yield {"url": "start", "i": 0}
        yield {"url": "start", "i": 1}
        for url in self.urls:
            yield scrapy.Request(url)
        if self.dead:
            yield scrapy.Request(self.dead, errback=self.on_dead)

    def parse(self, response):
        for i in range(2):
            yield {"url": response.url, "i": i}

    def on_dead(self, failure):
        yield {"url": failure.request.url, "i": 0}


class Recorder:
    """A project's pipeline: records each item's id, and what each hook call commits.

    Each hook call looks at the ledger first: none of the requests it is told
    about may be done yet. Its answer comes later (a coroutine sleeping longer
    than the commit interval): the commit waits for it."""

    ids: dict[str, tuple[str, int]] = {}
    calls: list[list[str]] = []
    undone_when_called: list[bool] = []
    fail_at_call: int | None = None

    def __init__(self, crawler):
        self.crawler = crawler
        crawler.signals.connect(self.before_commit, signal=checkpoint_before_commit)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        Recorder.ids[item_id(item, self.crawler)] = (item["url"], item["i"])
        return item

    async def before_commit(self, item_ids, spider):
        Recorder.calls.append(list(item_ids))
        urls = {Recorder.ids[i][0] for i in item_ids}
        with sqlite3.connect(f"{self.crawler.settings['CHECKPOINT_DIR']}/pages.sqlite") as db:
            done = {url for (url,) in db.execute("SELECT url FROM requests WHERE status = ?",
                                                 (int(RequestStatus.DONE),))}
        Recorder.undone_when_called.append(not (urls & done))
        await asyncio.sleep(0.3)
        if len(Recorder.calls) == Recorder.fail_at_call:
            raise ConnectionError("the database went away")


def crawler_for(tmp_path, **settings):
    Recorder.ids, Recorder.calls, Recorder.undone_when_called = {}, [], []
    Recorder.fail_at_call = None
    return get_crawler(PagesSpider, {
        "ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path),
        "CHECKPOINT_COMMIT_INTERVAL": 0.05, "ITEM_PIPELINES": {Recorder: 900}, **settings,
    })


def done_urls(tmp_path) -> set[str]:
    with sqlite3.connect(tmp_path / "pages.sqlite") as db:
        return {url for (url,) in db.execute("SELECT url FROM requests WHERE status = ?",
                                             (int(RequestStatus.DONE),))}


@deferred_f_from_coro_f
async def test_each_commit_waits_for_the_hook_told_its_items_once_each(tmp_path, mockserver):
    ns = mockserver.namespace()
    urls = [mockserver.url(f"{ns}/slow/10/{i}") for i in range(20)]
    dead = "http://127.0.0.1:1/dead"
    crawler = crawler_for(tmp_path)
    await maybe_deferred_to_future(crawler.crawl(urls=urls, dead=dead))
    assert crawler.stats.get_value("finish_reason") == "finished"

    told = [i for call in Recorder.calls for i in call]
    assert sorted(told) == sorted(Recorder.ids)  # every item, in exactly one commit
    assert len(told) == 2 + 20 * 2 + 1
    assert len(Recorder.calls) > 1  # (the commits during a call's wait were left to the next)
    assert all(Recorder.undone_when_called)
    assert done_urls(tmp_path) == set(urls)  # (and the dead link failed, its errback item in)

    fingerprint = crawler.request_fingerprinter.fingerprint
    expected = {"start-0": ("start", 0), "start-1": ("start", 1),
                f"{fingerprint(scrapy.Request(dead)).hex()}-e0": (dead, 0)}
    for url in urls:
        key = fingerprint(scrapy.Request(url)).hex()
        expected.update({f"{key}-c0": (url, 0), f"{key}-c1": (url, 1)})
    assert Recorder.ids == expected


@deferred_f_from_coro_f
async def test_a_failing_hook_fails_the_commit_and_marks_nothing_more_done(tmp_path, mockserver):
    ns = mockserver.namespace()
    urls = [mockserver.url(f"{ns}/slow/100/{i}") for i in range(40)]
    crawler = crawler_for(tmp_path, CONCURRENT_REQUESTS=2)
    Recorder.fail_at_call = 2
    await maybe_deferred_to_future(crawler.crawl(urls=urls))
    assert crawler.stats.get_value("finish_reason") == "checkpoint_write_error"
    assert crawler.stats.get_value("checkpoint/commit_errors") == 1

    first_commit = {Recorder.ids[i][0] for i in Recorder.calls[0]}
    assert done_urls(tmp_path) == first_commit - {"start"}
    assert len(Recorder.calls) == 2  # nothing committed, nor hooked, after the failure


def readme_pipeline():
    """The BatchingPipeline of the README's "Writing items to a database", as printed there."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [block for block in blocks if "class BatchingPipeline" in block]
    namespace: dict = {}
    exec(code, namespace)
    return namespace["BatchingPipeline"]


class ProductsSpider(PagesSpider):
    name = "products"

    async def start(self):
        for url in self.urls:
            yield scrapy.Request(url)

    def parse(self, response):
        for i in range(2):
            yield {"name": f"{response.url} #{i}", "price": i}


@deferred_f_from_coro_f
async def test_the_readme_pipeline_writes_every_item_before_its_request_is_done(
    tmp_path, mockserver, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # (it writes items.db in the working directory)
    ns = mockserver.namespace()
    urls = [mockserver.url(f"{ns}/slow/10/{i}") for i in range(10)]
    crawler = get_crawler(ProductsSpider, {
        "ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path),
        "CHECKPOINT_COMMIT_INTERVAL": 0.05, "ITEM_PIPELINES": {readme_pipeline(): 900},
    })
    await maybe_deferred_to_future(crawler.crawl(urls=urls))
    assert crawler.stats.get_value("finish_reason") == "finished"
    with sqlite3.connect(tmp_path / "items.db") as db:
        rows = db.execute("SELECT id, name, price FROM products").fetchall()
    fingerprint = crawler.request_fingerprinter.fingerprint
    expected = {(f"{fingerprint(scrapy.Request(url)).hex()}-c{i}", f"{url} #{i}", i)
                for url in urls for i in range(2)}
    assert sorted(rows) == sorted(expected)
