"""Exercises what must behave exactly as in plain Scrapy: retries, redirects,
errbacks (download errors and HTTP errors), dont_filter duplicates, cb_kwargs,
callback exceptions, offsite requests and a custom start()."""

from __future__ import annotations

import scrapy

from tests.spiders.common import StatsDumpingSpider


class FeaturesSpider(StatsDumpingSpider):
    name = "features"
    # OffsiteMiddleware refuses the links to offsite.invalid in request_scheduled
    allowed_domains = ["127.0.0.1"]

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    async def start(self):
        base = self.base
        yield scrapy.Request(f"{base}/g/13/3/0", callback=self.parse_page, cb_kwargs={"label": "g"})
        yield scrapy.Request(f"{base}/flaky/2/a", callback=self.parse_plain)
        yield scrapy.Request(f"{base}/redirect/slow/10/target", callback=self.parse_plain)
        # redirects to a page already scheduled: the dupefilter drops the redirect
        yield scrapy.Request(f"{base}/redirect/g/13/3/0", callback=self.parse_plain)
        yield scrapy.Request(f"{base}/status/404", callback=self.parse_plain, errback=self.on_error)
        yield scrapy.Request(f"{base}/status/500", callback=self.parse_plain)
        yield scrapy.Request("http://127.0.0.1:1/refused", errback=self.on_error)
        yield scrapy.Request("http://127.0.0.1:1/refused-no-errback")
        yield scrapy.Request(f"{base}/status/200?boom=1", callback=self.parse_boom)
        for copy in (1, 2):  # the same URL twice: both are fetched
            yield scrapy.Request(
                f"{base}/slow/10/dup", callback=self.parse_plain, dont_filter=True,
                cb_kwargs={"copy": copy},
            )
        yield scrapy.Request("http://offsite.invalid/from-start")
        yield {"from": "start"}

    def parse_page(self, response, label):
        yield {"url": response.url, "label": label}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse_page, cb_kwargs={"label": label + "+"})

    def parse_plain(self, response, copy=0):
        yield {"url": response.url, "status": response.status, "copy": copy}

    def parse_boom(self, response):
        yield {"url": response.url, "before": "boom"}
        raise ValueError("boom")

    def on_error(self, failure):
        url = failure.request.url
        yield {"error": type(failure.value).__name__, "url": url}
        yield scrapy.Request("http://offsite.invalid/from-errback")  # twice: two errbacks run
        yield scrapy.Request(f"{self.base}/status/200?after_error={url[-7:]}", callback=self.parse_plain)
