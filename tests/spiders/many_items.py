"""One page, many items of every shape a feed must write: text beyond ASCII,
numbers, nested dicts and lists, missing fields. Arguments: ``start`` (the
page), ``items`` (how many)."""

from __future__ import annotations

import scrapy

from tests.spiders.common import StatsDumpingSpider


class ManyItemsSpider(StatsDumpingSpider):
    name = "many_items"

    def __init__(self, start: str, items: str = "20", **kwargs):
        super().__init__(**kwargs)
        self.start_url = start
        self.count = int(items)

    async def start(self):
        yield scrapy.Request(self.start_url)

    def parse(self, response):
        for n in range(self.count):
            item = {"url": f"{response.url}#{n}", "n": n, "price": n * 1.25,
                    "title": f"Café n°{n} — «ünïcødé»", "tags": ["a", f"t{n % 3}"]}
            if n % 4 == 0:
                item["seller"] = {"name": "Zoë & <Co>", "rating": n % 5}
            if n % 5 == 0:
                del item["tags"]
            yield item
