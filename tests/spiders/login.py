"""A crawl behind a login: start() posts the login form, then the private pages
of the account are crawled (5 links each), one item per page.

Arguments: ``site`` (the mock server's namespace URL), ``size`` (private
pages per account), ``accounts`` (comma-separated; each logs in with its own
``meta["cookiejar"]``, 1, 2...), ``remember`` (ask the login for a
``remember`` cookie of that many seconds), ``relogin=1`` (the documented
pattern for a session gone anyway: the login is ``checkpoint_skip``, so it
is sent on every run, with CHECKPOINT_RESTORE_AFTER_START), ``check=1``
(raise SessionExpired on a login form instead of storing it as an item, as a
naive spider would).
"""

from __future__ import annotations

import scrapy

from scrapy_resume import SessionExpired
from tests.spiders.common import StatsDumpingSpider


class LoginSpider(StatsDumpingSpider):
    name = "login"
    size = "1000"
    accounts = "alice"
    remember = ""
    relogin = ""
    check = ""

    async def start(self):
        for jar, account in enumerate(self.accounts.split(","), start=1):
            form = {"user": account, "password": "secret"}
            if self.remember:
                form["remember"] = self.remember
            meta = {"cookiejar": jar, "account": account}
            if self.relogin:
                meta["checkpoint_skip"] = True  # logs in on every run
            yield scrapy.FormRequest(f"{self.site}/login", formdata=form, meta=meta,
                                     callback=self.after_login, dont_filter=True)

    def after_login(self, response):
        account = response.meta["account"]
        yield scrapy.Request(f"{self.site}/p/{account}/{self.size}/0", callback=self.parse,
                             meta={"cookiejar": response.meta["cookiejar"]})

    def parse(self, response):
        if response.css("form"):  # redirected to the login form: the session is gone
            if self.check:
                raise SessionExpired(f"{response.request.meta['redirect_urls'][0]} "
                                     f"redirected to the login form")
            yield {"url": response.url, "title": "Login"}
            return
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse,
                                  meta={"cookiejar": response.meta["cookiejar"]})
