"""In-process crawls (pytest-twisted, asyncio reactor): components and completion timing."""

from __future__ import annotations

import asyncio
import sqlite3

import scrapy
from scrapy.utils.defer import deferred_f_from_coro_f, maybe_deferred_to_future
from scrapy.utils.test import get_crawler

from scrapy_resume import (
    Addon,
    CheckpointExtension,
    CheckpointMiddleware,
    CheckpointSpiderMiddleware,
    RequestStatus,
)


class NoRequestsSpider(scrapy.Spider):
    name = "empty"

    async def start(self):
        return
        yield


@deferred_f_from_coro_f
async def test_addon_installs_every_component(tmp_path):
    crawler = get_crawler(
        NoRequestsSpider, {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)}
    )
    await maybe_deferred_to_future(crawler.crawl())
    assert crawler.settings.getbool("CHECKPOINT_ENABLED")
    assert isinstance(crawler.get_extension(CheckpointExtension), CheckpointExtension)
    assert isinstance(crawler.get_downloader_middleware(CheckpointMiddleware), CheckpointMiddleware)
    assert isinstance(
        crawler.get_spider_middleware(CheckpointSpiderMiddleware), CheckpointSpiderMiddleware
    )
    storages = crawler.settings.getdict("FEED_STORAGES")
    assert storages[""] == storages["file"] == "scrapy_resume.ResumableFileFeedStorage"
    assert crawler.stats.get_value("finish_reason") == "finished"
    assert (tmp_path / "empty.sqlite").exists()


@deferred_f_from_coro_f
async def test_project_setting_turns_the_addon_off(tmp_path):
    crawler = get_crawler(
        NoRequestsSpider,
        {"ADDONS": {Addon: 0}, "CHECKPOINT_ENABLED": False, "CHECKPOINT_DIR": str(tmp_path)},
    )
    await maybe_deferred_to_future(crawler.crawl())
    assert crawler.get_extension(CheckpointExtension) is None
    assert not (tmp_path / "empty.sqlite").exists()


class LedgerProbe:
    """A slow pipeline that looks at the ledger while each item is still in flight."""

    seen: list[RequestStatus | None] = []

    def __init__(self, path):
        self.path = path

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings["CHECKPOINT_DIR"] + "/pages.sqlite")

    async def process_item(self, item):
        await asyncio.sleep(0.3)  # longer than the commit interval: commits happen meanwhile
        with sqlite3.connect(self.path) as db:
            row = db.execute("SELECT status FROM requests WHERE url = ?", (item["url"],)).fetchone()
        LedgerProbe.seen.append(RequestStatus(row[0]) if row else None)
        return item


class PagesSpider(scrapy.Spider):
    name = "pages"
    custom_settings = {"CONCURRENT_ITEMS": 1}

    def __init__(self, urls, **kwargs):
        super().__init__(**kwargs)
        self.urls = urls

    async def start(self):
        for url in self.urls:
            yield scrapy.Request(url)

    def parse(self, response):
        for i in range(3):
            yield {"url": response.url, "i": i}


@deferred_f_from_coro_f
async def test_a_request_is_done_only_after_its_items_left_the_pipelines(tmp_path, mockserver):
    ns = mockserver.namespace()
    urls = [mockserver.url(f"{ns}/slow/10/{i}") for i in range(4)]
    LedgerProbe.seen = []
    crawler = get_crawler(PagesSpider, {
        "ADDONS": {Addon: 0},
        "CHECKPOINT_DIR": str(tmp_path),
        "CHECKPOINT_COMMIT_INTERVAL": 0.05,
        "ITEM_PIPELINES": {LedgerProbe: 100},
    })
    await maybe_deferred_to_future(crawler.crawl(urls=urls))
    assert len(LedgerProbe.seen) == 12
    assert RequestStatus.DONE not in LedgerProbe.seen
    with sqlite3.connect(tmp_path / "pages.sqlite") as db:
        statuses = dict(db.execute("SELECT url, status FROM requests"))
    assert statuses == {url: RequestStatus.DONE for url in urls}


class SkipMetaSpider(scrapy.Spider):
    name = "skipmeta"

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    async def start(self):
        yield scrapy.Request(f"{self.base}/slow/1/polled", meta={"checkpoint_skip": True})
        yield scrapy.Request(f"{self.base}/slow/1/tracked")

    def parse(self, response):
        yield {"url": response.url}
        if response.url.endswith("/polled"):
            # a child of an untracked response, carrying its meta: tracked on its own
            yield response.follow("child", meta=dict(response.meta, checkpoint_skip=False))


@deferred_f_from_coro_f
async def test_checkpoint_skip_meta_keeps_a_request_out_of_the_ledger(tmp_path, mockserver):
    ns = mockserver.namespace()
    base = mockserver.url(f"{ns}")
    crawler = get_crawler(SkipMetaSpider, {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)})
    await maybe_deferred_to_future(crawler.crawl(base=base))
    assert crawler.stats.get_value("item_scraped_count") == 3
    with sqlite3.connect(tmp_path / "skipmeta.sqlite") as db:
        statuses = dict(db.execute("SELECT url, status FROM requests"))
    assert statuses == {
        f"{base}/slow/1/tracked": RequestStatus.DONE,
        f"{base}/slow/1/child": RequestStatus.DONE,
    }


class HoldingSpider(scrapy.Spider):
    """Holds its stage open until told to finish."""

    name = "holding"

    async def start(self):
        self.opened.set()  # start() runs once the stage is open
        await self.release.wait()
        return
        yield


@deferred_f_from_coro_f
async def test_two_crawlers_of_one_stage_in_one_process_are_told_apart(tmp_path, caplog):
    settings = {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)}
    opened, release = asyncio.Event(), asyncio.Event()
    first = get_crawler(HoldingSpider, settings)
    running = asyncio.ensure_future(maybe_deferred_to_future(
        first.crawl(opened=opened, release=release)))
    await opened.wait()
    second = get_crawler(HoldingSpider, settings)
    done = asyncio.Event()
    done.set()
    await maybe_deferred_to_future(second.crawl(opened=asyncio.Event(), release=done))
    assert second.stats.get_value("finish_reason") == "checkpoint_locked"
    assert "Stage holding is already being run by this process" in caplog.text
    assert "CHECKPOINT_STAGE" in caplog.text
    release.set()
    await running
    assert first.stats.get_value("finish_reason") == "finished"
