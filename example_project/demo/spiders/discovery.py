"""Stage 1: walk every category's listing pages and collect product URLs.

The listing pages of a category are followed one after the other, and the
spider keeps its place in a cursor per category: a resumed crawl starts each
category at the last page whose effects were committed.
"""

from __future__ import annotations

import scrapy

from scrapy_resume import checkpoint


class DiscoverySpider(scrapy.Spider):
    name = "discovery"

    def __init__(self, site: str, **kwargs):
        super().__init__(**kwargs)
        self.site = site.rstrip("/")

    async def start(self):
        # the home page lists the categories
        yield scrapy.Request(f"{self.site}/", callback=self.parse_home)

    def parse_home(self, response):
        state = checkpoint(self)
        for category in response.css("a.category::attr(data-name)").getall():
            page = state.get_cursor(f"category:{category}", 1)
            if page is not None:  # None: this category was walked to its end
                yield self.listing(category, page)

    def listing(self, category: str, page: int) -> scrapy.Request:
        return scrapy.Request(
            f"{self.site}/category/{category}?page={page}",
            callback=self.parse_listing,
            cb_kwargs={"category": category, "page": page},
        )

    def parse_listing(self, response, category: str, page: int):
        for href in response.css("a.product::attr(href)").getall():
            yield {"url": response.urljoin(href), "category": category, "listing_page": page}
        has_next = bool(response.css("a.next"))
        # committed together with this page's items and its next-page request
        checkpoint(self).set_cursor(
            f"category:{category}", page + 1 if has_next else None, response=response
        )
        if has_next:
            yield self.listing(category, page + 1)
