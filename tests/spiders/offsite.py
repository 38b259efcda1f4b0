"""An offsite link refused, then the same URL allowed (``allow_offsite``) from a
later page: plain Scrapy fetches it, since the dupefilter never saw the refused one."""

from __future__ import annotations

import scrapy

from tests.spiders.common import StatsDumpingSpider


class OffsiteSpider(StatsDumpingSpider):
    name = "offsite"
    allowed_domains = ["127.0.0.1"]

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")
        # the same server under another host name: offsite for allowed_domains
        self.elsewhere = self.base.replace("127.0.0.1", "localhost") + "/status/200?elsewhere"

    async def start(self):
        yield scrapy.Request(f"{self.base}/status/200?first", callback=self.parse_first)

    def parse_first(self, response):
        yield {"url": response.url}
        yield scrapy.Request(self.elsewhere)  # refused by OffsiteMiddleware
        yield scrapy.Request(f"{self.base}/status/200?second", callback=self.parse_second)

    def parse_second(self, response):
        yield {"url": response.url}
        yield scrapy.Request(self.elsewhere, meta={"allow_offsite": True})

    def parse(self, response):
        yield {"url": response.url}
