"""One page, many items of every shape a feed must write: text beyond ASCII,
numbers, nested dicts and lists, missing fields. Arguments: ``start`` (the
page), ``items`` (how many)."""

from __future__ import annotations

from dataclasses import dataclass

import scrapy

from tests.spiders.common import StatsDumpingSpider


@dataclass
class Offer:
    """Every third item is one of these (for ``item_classes``)."""

    url: str
    n: int
    title: str


class EvenItems:
    """An ``item_filter``: only the items with an even ``n``."""

    def __init__(self, feed_options):
        self.feed_options = feed_options

    def accepts(self, item) -> bool:
        return getattr(item, "n", None) % 2 == 0 if isinstance(item, Offer) else item["n"] % 2 == 0


def shop_params(params: dict, spider) -> dict:
    """A ``FEED_URI_PARAMS`` function: adds %(shop)s."""
    return {**params, "shop": "north"}


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
            yield Offer(item["url"], n, item["title"]) if n % 3 == 0 else item
