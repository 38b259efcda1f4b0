"""Crawls the mock server's page graph: one item per page."""

from __future__ import annotations

from tests.spiders.common import StatsDumpingSpider


class GraphSpider(StatsDumpingSpider):
    name = "graph"

    def __init__(self, start: str, also: str = "", **kwargs):
        super().__init__(**kwargs)
        # "also": an extra start URL, e.g. a slow page that keeps a graceful stop draining
        self.start_urls = [start, also] if also else [start]

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.follow_all(css="a")
