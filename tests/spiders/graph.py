"""Crawls the mock server's page graph: one item per page.

Options (spider arguments), for the feed tests: ``start_items=N`` yields N
items from start(); ``dead_every=K`` adds, on every page ``n`` with
``n % K == 7``, a link to a dead port whose errback yields an item;
``drop_every=K`` has a pipeline drop the items of pages with ``n % K == 3``;
``offsite_every=K`` adds, on every page with ``n % K == 5``, a link to the same
page by another host name (localhost), which OffsiteMiddleware refuses;
``with_depth=1`` puts each page's depth in its item; ``more_starts=N`` has
start() also yield N requests for the start URL's next N siblings
(``.../1`` to ``.../N``: a huge start(), for bench/frontier_memory.py).
``TEST_KILL_AT_START_REQUEST=N`` SIGKILLs the process as its N-th start request is
scheduled, after every other request_scheduled handler (the checkpoint's claim of it)
and before the scheduler has it. ``TEST_STOP_AT_COMMIT=N`` SIGSTOPs the process at its N-th commit with items, between
the fence of its leases and the commit itself. The settings ``TEST_LOCK_AT_CLOSE=PATH``
and ``TEST_LOCK_AT_FIRST_PAGE=PATH``
(settings: a resume compares spider arguments) hold an exclusive lock on the
SQLite file PATH from the moment the spider closes, or parses its first page,
so that the checkpoint's next commit fails.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import weakref

import scrapy
from scrapy.exceptions import DropItem

from tests.spiders.common import StatsDumpingSpider


def page_number(url: str) -> int:
    return int(url.rstrip("/").rsplit("/", 1)[-1])


class DropSomePages:
    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        every = self.crawler.spider.drop_every
        if every and item["kind"] == "page" and page_number(item["url"]) % every == 3:
            raise DropItem("dropped by the test pipeline")
        return item


class GraphSpider(StatsDumpingSpider):
    name = "graph"

    def __init__(self, start: str, also: str = "", start_items: str = "0", dead_every: str = "0",
                 drop_every: str = "0", offsite_every: str = "0", with_depth: str = "",
                 more_starts: str = "0", **kwargs):
        super().__init__(**kwargs)
        # "also": an extra start URL, e.g. a slow page that keeps a graceful stop draining
        self.start_urls = [start, also] if also else [start]
        self.start_items = int(start_items)
        self.dead_every = int(dead_every)
        self.drop_every = int(drop_every)
        self.offsite_every = int(offsite_every)
        self.with_depth = bool(with_depth)  # each page item says its depth
        self.more_starts = int(more_starts)
        if self.offsite_every:
            self.allowed_domains = ["127.0.0.1"]

    @classmethod
    def update_settings(cls, settings):
        super().update_settings(settings)
        settings.set("ITEM_PIPELINES", {DropSomePages: 100}, priority="spider")

    async def start(self):
        for i in range(self.start_items):
            yield {"url": f"start:{i}", "title": "", "kind": "start"}
        # TEST_KILL_AT_START_REQUEST: which requests are start requests (weakly: a
        # million of them must not stay in memory, see bench/frontier_memory.py)
        starts = getattr(self, "_start_requests", None)
        async for request in super().start():
            if starts is not None:
                starts.add(request)
            yield request
        siblings = self.start_urls[0].rstrip("/").rsplit("/", 1)[0]
        for n in range(1, self.more_starts + 1):
            request = scrapy.Request(f"{siblings}/{n}")
            if starts is not None:
                starts.add(request)
            yield request

    def parse(self, response):
        self.lock_checkpoint("TEST_LOCK_AT_FIRST_PAGE")
        item = {"url": response.url, "title": response.css("title::text").get(), "kind": "page"}
        if self.with_depth:
            item["depth"] = response.meta["depth"]
        yield item
        yield from response.follow_all(css="a")
        if self.dead_every and page_number(response.url) % self.dead_every == 7:
            dead = f"http://127.0.0.1:1/dead/{page_number(response.url)}"
            yield scrapy.Request(dead, errback=self.on_dead)
        if self.offsite_every and page_number(response.url) % self.offsite_every == 5:
            yield scrapy.Request(response.url.replace("127.0.0.1", "localhost"))

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        if crawler.settings.getint("TEST_KILL_AT_START_REQUEST"):
            spider._starts_scheduled = 0  # (private: not recorded as an argument)
            spider._start_requests = weakref.WeakSet()
            crawler.signals.connect(spider.connect_start_killer, signal=scrapy.signals.spider_opened)
        if crawler.settings.getint("TEST_STOP_AT_COMMIT"):
            from scrapy_resume import signals as checkpoint_signals

            spider._commits_seen = 0  # (private: not recorded as an argument)
            crawler.signals.connect(spider.stop_at_commit,
                                    signal=checkpoint_signals.checkpoint_before_commit)
        return spider

    def connect_start_killer(self, spider):
        # connected now, after the extensions' handlers: it runs last
        self.crawler.signals.connect(self.kill_at_start_request,
                                     signal=scrapy.signals.request_scheduled)

    def kill_at_start_request(self, request, **kwargs):
        if request in self._start_requests:
            self._starts_scheduled += 1
            if self._starts_scheduled == self.settings.getint("TEST_KILL_AT_START_REQUEST"):
                os.kill(os.getpid(), signal.SIGKILL)

    def stop_at_commit(self, item_ids, **kwargs):
        """TEST_STOP_AT_COMMIT=N: SIGSTOP this process at its N-th commit with items,
        after the leases were fenced and before the commit is written (the window a
        frozen worker can fall in)."""
        self._commits_seen += 1
        if self._commits_seen == self.settings.getint("TEST_STOP_AT_COMMIT"):
            os.kill(os.getpid(), signal.SIGSTOP)

    def closed(self, reason):
        # runs before the checkpoint's own spider_closed handler: the spider's is
        # connected first
        self.lock_checkpoint("TEST_LOCK_AT_CLOSE")

    def lock_checkpoint(self, setting: str) -> None:
        path = self.settings.get(setting)
        if path and not hasattr(self, "holding"):
            self.holding = sqlite3.connect(path, isolation_level=None)
            self.holding.execute("BEGIN EXCLUSIVE")

    def on_dead(self, failure):
        yield {"url": failure.request.url, "title": "", "kind": "dead"}
