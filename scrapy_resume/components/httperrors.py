"""Which responses Scrapy's HttpErrorMiddleware drops before the callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy_resume.components.enabling import has_component

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class HttpErrorPolicy:
    """Mirrors Scrapy's HttpErrorMiddleware.process_spider_input (httperror.py), which
    drops non-2xx responses before the callback unless allowed, so that such a
    request is recorded as failed. No public API tells which responses it drops."""

    def __init__(self, crawler: Crawler):
        from scrapy.spidermiddlewares.httperror import HttpErrorMiddleware

        settings = crawler.settings
        self.crawler = crawler
        self.enabled = has_component(settings, "SPIDER_MIDDLEWARES", HttpErrorMiddleware)
        self.allow_all = settings.getbool("HTTPERROR_ALLOW_ALL")
        self.allowed = settings.getlist("HTTPERROR_ALLOWED_CODES")

    def ignores(self, response: Any) -> bool:
        if not self.enabled or 200 <= response.status < 300:
            return False
        meta = response.meta
        if meta.get("handle_httpstatus_all", False):
            return False
        if "handle_httpstatus_list" in meta:
            allowed = meta["handle_httpstatus_list"]
        elif self.allow_all:
            return False
        else:
            allowed = getattr(self.crawler.spider, "handle_httpstatus_list", self.allowed)
        return response.status not in allowed
