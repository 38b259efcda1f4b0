"""Fetches the URLs listed in an input file, one per line."""

from __future__ import annotations

import scrapy

from tests.spiders.common import StatsDumpingSpider


class UrlsSpider(StatsDumpingSpider):
    name = "urls"

    def __init__(self, input: str, **kwargs):
        super().__init__(**kwargs)
        self.input = input

    async def start(self):
        with open(self.input) as lines:
            for line in lines:
                if line.strip():
                    yield scrapy.Request(line.strip(), callback=self.parse)

    def parse(self, response):
        yield {"url": response.url}
