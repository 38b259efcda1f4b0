"""The components' wiring, in-process with Scrapy's get_crawler: no crawl runs."""

from __future__ import annotations

import scrapy
from scrapy.utils.test import get_crawler

from scrapy_resume import Addon, CheckpointExtension
from scrapy_resume.components.enabling import (
    COMPONENTS,
    COOKIES_LINE,
    FEED_STORAGE_LINE,
    missing_lines,
)
from scrapy_resume.components.lookup import runtime_of


def crawler_with(settings: dict, tmp_path) -> scrapy.crawler.Crawler:
    return get_crawler(scrapy.Spider, {"CHECKPOINT_DIR": str(tmp_path), **settings})


def test_the_addon_installs_every_line_of_the_table(tmp_path):
    crawler = crawler_with({"ADDONS": {Addon: 0}, "FEEDS": {"items.jsonl": {}}}, tmp_path)
    assert missing_lines(crawler.settings) == []
    for component in COMPONENTS:
        assert crawler.settings.getwithbase(component.setting)[component.cls] == (
            component.priority
        )
    # and nothing else in the crawl: the runtime is found through get_extension
    runtime = runtime_of(crawler)
    assert runtime is crawler.get_extension(CheckpointExtension).runtime is not None


def test_the_addon_puts_its_cookies_middleware_in_the_place_of_scrapys(tmp_path):
    from scrapy.downloadermiddlewares.cookies import CookiesMiddleware
    from scrapy.utils.conf import build_component_list
    from scrapy.utils.misc import load_object

    from scrapy_resume import CheckpointCookiesMiddleware

    def cookie_middlewares(settings):
        crawler = crawler_with({"ADDONS": {Addon: 0}, **settings}, tmp_path)
        enabled = build_component_list(crawler.settings.getwithbase("DOWNLOADER_MIDDLEWARES"))
        return [cls for cls in map(load_object, enabled) if issubclass(cls, CookiesMiddleware)]

    assert cookie_middlewares({}) == [CheckpointCookiesMiddleware]
    assert cookie_middlewares({"CHECKPOINT_COOKIES": False}) == [CookiesMiddleware]


def test_a_manual_set_up_missing_lines_is_told_each_one(tmp_path):
    middleware = COMPONENTS[0]
    crawler = crawler_with({
        "CHECKPOINT_ENABLED": True,
        middleware.setting: {middleware.path: middleware.priority},
        "FEEDS": {"items.jsonl": {}},
    }, tmp_path)
    assert missing_lines(crawler.settings) == [
        'SPIDER_MIDDLEWARES = {"scrapy_resume.CheckpointSpiderMiddleware": 1}',
        'EXTENSIONS = {"scrapy_resume.CheckpointExtension": 0}',
        COOKIES_LINE,
        FEED_STORAGE_LINE,
    ]
    assert runtime_of(crawler) is None  # no extension: components run as plain Scrapy


def test_a_project_setting_still_wins_over_the_addon(tmp_path):
    crawler = crawler_with({"ADDONS": {Addon: 0}, "CHECKPOINT_ENABLED": False}, tmp_path)
    assert not crawler.settings.getbool("CHECKPOINT_ENABLED")
    assert crawler.get_extension(CheckpointExtension) is None  # NotConfigured


def test_an_error_in_start_itself_is_not_a_request_of_ours(tmp_path):
    # spider_error comes with no response when start() raises; the start gate
    # (CHECKPOINT_RESTORE_AFTER_START) has nothing to release then
    from twisted.python.failure import Failure

    crawler = crawler_with({"ADDONS": {Addon: 0}, "CHECKPOINT_RESTORE_AFTER_START": True},
                           tmp_path)
    extension = crawler.get_extension(CheckpointExtension)
    assert extension.runtime.start_gate is not None
    extension.spider_error(Failure(ValueError("start() broke")), None)


def test_a_leased_pop_takes_as_many_requests_as_the_downloader_has_room_for():
    # Scrapy's Downloader: its public `active` and `total_concurrency`. Should they
    # go, the pops take one request at a time again, slower: this fails first.
    from types import SimpleNamespace

    from scrapy.core.downloader import Downloader

    from scrapy_resume.components.leasedqueue import MOST_TAKEN, free_download_slots

    crawler = get_crawler(settings_dict={"CONCURRENT_REQUESTS": 7})
    crawler.engine = SimpleNamespace(downloader=Downloader(crawler))  # type: ignore[assignment]
    assert free_download_slots(crawler) == 7
    crawler.engine.downloader.active.update(scrapy.Request(f"http://x/{n}") for n in range(5))
    assert free_download_slots(crawler) == 2
    crawler.engine.downloader.active.update(scrapy.Request(f"http://y/{n}") for n in range(5))
    assert free_download_slots(crawler) == 1  # (the engine asks only when there is room)
    crawler.engine.downloader.total_concurrency = 0  # no limit
    assert free_download_slots(crawler) == MOST_TAKEN
