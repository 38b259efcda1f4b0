"""Stage 4: a crawl behind a login, the customer's orders.

start() logs in, then the order pages are crawled. The add-on commits the
cookie jar with the responses that set it, so a crawl killed after the login
resumes logged in. For a session that is gone anyway (the server restarted
while the crawl was down, as ``run_demo.py`` makes it do), the spider uses
the re-login pattern:

- the login request is ``checkpoint_skip``: it is sent on every run, never
  marked done;
- ``CHECKPOINT_RESTORE_AFTER_START``: the requests restored from the
  checkpoint wait until start()'s requests (the login) have finished;
- a page that turns out to be the login form raises ``SessionExpired``: its
  request ends failed, not done, and ``-s CHECKPOINT_RETRY_FAILED=1``
  fetches it again after a new login.
"""

from __future__ import annotations

import scrapy
from scrapy.exceptions import CloseSpider

from scrapy_resume import SessionExpired


class OrdersSpider(scrapy.Spider):
    name = "orders"
    custom_settings = {"CHECKPOINT_RESTORE_AFTER_START": True}

    def __init__(self, site: str, **kwargs):
        super().__init__(**kwargs)
        self.site = site.rstrip("/")

    async def start(self):
        yield scrapy.FormRequest(
            f"{self.site}/login", formdata={"user": "demo", "password": "demo"},
            callback=self.after_login, meta={"checkpoint_skip": True},
        )

    def after_login(self, response):
        if response.css("form"):
            raise CloseSpider("login_failed")
        # done in an earlier run? Then the checkpoint drops it, and the restored
        # requests carry on from where that run stopped.
        yield scrapy.Request(f"{self.site}/account/orders?page=1", callback=self.parse_orders)

    def check_session(self, response):
        if response.css("form"):  # redirected to the login form
            raise SessionExpired(f"{response.meta['redirect_urls'][0]} asked to log in")

    def parse_orders(self, response):
        self.check_session(response)
        for href in response.css("a.order::attr(href)").getall():
            yield response.follow(href, callback=self.parse_order)
        next_page = response.css("a.next::attr(href)").get()
        if next_page:
            yield response.follow(next_page, callback=self.parse_orders)

    def parse_order(self, response):
        self.check_session(response)
        yield {
            "url": response.url,
            "order": int(response.url.rsplit("/", 1)[1]),
            "total": float(response.css("p.total::text").get()),
        }
