"""A CrawlSpider: its rules' requests all carry CrawlSpider's own errback.

The start page links to a 404, a 500, a refused port and a working page (rule
without an errback), and to a 503 whose rule has an errback that yields an
item (the spider handles that failure).
"""

from __future__ import annotations

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

from tests.spiders.common import StatsDumpingSpider


class RulesSpider(StatsDumpingSpider, CrawlSpider):
    name = "rules"
    rules = (
        Rule(LinkExtractor(restrict_css="a.plain"), callback="parse_page"),
        Rule(LinkExtractor(restrict_css="a.handled"), callback="parse_page",
             errback="on_error"),
    )

    def __init__(self, base: str, **kwargs):
        super().__init__(**kwargs)
        base = base.rstrip("/")
        targets = ["status/404", "status/500", "http://127.0.0.1:1/refused", "slow/10/ok"]
        query = "&".join(f"plain={target}" for target in targets)
        self.start_urls = [f"{base}/links?{query}&handled=status/503"]

    def parse_page(self, response):
        yield {"url": response.url, "kind": "page"}

    def on_error(self, failure):
        yield {"url": failure.request.url, "kind": "handled"}
