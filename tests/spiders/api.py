"""Pages through a paginated API per account, keeping its place in a cursor."""

from __future__ import annotations

import scrapy

from scrapy_resume import checkpoint
from tests.spiders.common import StatsDumpingSpider


class ApiSpider(StatsDumpingSpider):
    name = "api"

    def __init__(self, base: str, accounts: str = "a,b,c", pages: str = "40", **kwargs):
        super().__init__(**kwargs)
        self.base = base.rstrip("/")
        self.accounts = accounts.split(",")
        self.pages = pages

    def page_request(self, account: str, page: int) -> scrapy.Request:
        return scrapy.Request(
            f"{self.base}/api/{account}/{page}?pages={self.pages}",
            callback=self.parse_page,
            cb_kwargs={"account": account},
        )

    async def start(self):
        state = checkpoint(self)
        for account in self.accounts:
            page = state.get_cursor(f"account:{account}", 0)
            if page is not None:  # None: this account is finished
                yield self.page_request(account, page)

    def parse_page(self, response, account):
        data = response.json()
        for item in data["items"]:
            yield {"id": item}
        checkpoint(self).set_cursor(f"account:{account}", data["next"], response=response)
        if data["next"] is not None:
            yield self.page_request(account, data["next"])
