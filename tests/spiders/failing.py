"""Requests that fail in different ways: a flaky page that recovers on a later
run, a 500, a refused connection and a callback exception; plus one that works."""

from __future__ import annotations

import scrapy

from tests.spiders.common import StatsDumpingSpider


class FailingSpider(StatsDumpingSpider):
    name = "failing"

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    async def start(self):
        for path in ("flaky/4/x", "status/500", "status/200?boom=1", "slow/10/ok"):
            yield scrapy.Request(f"{self.base}/{path}", callback=self.parse_page)
        yield scrapy.Request("http://127.0.0.1:1/refused", callback=self.parse_page)

    def parse_page(self, response):
        if "boom" in response.url:
            raise ValueError("boom")
        yield {"url": response.url}
