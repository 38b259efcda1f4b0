"""A parent whose child request cannot be serialized (its callback is a lambda)."""

from __future__ import annotations

import asyncio

import scrapy

from tests.spiders.common import StatsDumpingSpider


class LambdaSpider(StatsDumpingSpider):
    name = "lambdas"

    def __init__(self, base: str, child_ms: str = "10", linger: str = "0", **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")
        self.child_ms = child_ms
        self.linger = float(linger)  # seconds the parent's callback runs on after its children

    async def start(self):
        yield scrapy.Request(f"{self.base}/slow/10/parent", callback=self.parse_parent)

    async def parse_parent(self, response):
        yield {"page": "parent"}
        yield scrapy.Request(f"{self.base}/slow/10/sibling", callback=self.parse_child)
        yield scrapy.Request(
            f"{self.base}/slow/{self.child_ms}/child",
            callback=lambda response: self.parse_child(response),
        )
        if self.linger:
            await asyncio.sleep(self.linger)

    def parse_child(self, response):
        yield {"page": response.url.rsplit("/", 1)[-1]}
