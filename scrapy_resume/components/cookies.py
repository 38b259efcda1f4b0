"""CheckpointCookiesMiddleware: Scrapy's CookiesMiddleware, with its jars in the checkpoint.

The add-on puts it in the place of Scrapy's (priority 700). It behaves as
Scrapy's does; in a checkpointed crawl it also reports every change a
request or a response makes to a jar, committed with that request (see
engine/cookiejars.py), and a resume puts the committed cookies back in their
jars before its first request, leaving out those that expired meanwhile.
With ``CHECKPOINT_COOKIES = False``, or in a crawl that is not checkpointed,
it is Scrapy's middleware exactly.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy.downloadermiddlewares.cookies import CookiesMiddleware

from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.config import cookies_checkpointed
from scrapy_resume.engine.cookiejars import describe_jar, jar_contents
from scrapy_resume.engine.requestmeta import KEY_META

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from scrapy_resume.engine.runtime import CheckpointRuntime

logger = logging.getLogger(__name__)


class CheckpointCookiesMiddleware(CookiesMiddleware):
    runtime: CheckpointRuntime | None = None
    restored = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointCookiesMiddleware:
        middleware = super().from_crawler(crawler)  # NotConfigured if COOKIES_ENABLED is off
        if cookies_checkpointed(crawler.settings):
            middleware.runtime = runtime_of(crawler)  # None under a debugging command
        return middleware

    def _tracking(self, request: Request) -> CheckpointRuntime | None:
        runtime = self.runtime
        if runtime is None or not runtime.active or request.meta.get("dont_merge_cookies"):
            return None
        if not self.restored:
            self.restore(runtime)
        return runtime

    def process_request(
        self, request: Request, spider: Any = None
    ) -> Request | Response | None:
        runtime = self._tracking(request)
        if runtime is None or not request.cookies:  # (only Request.cookies change the jar)
            return super().process_request(request)
        jar_key = request.meta.get("cookiejar")
        before = jar_contents(self.jars[jar_key])
        result = super().process_request(request)
        self._changed(runtime, request, jar_key, before)
        return result

    def process_response(
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        runtime = self._tracking(request)
        if runtime is None or b"Set-Cookie" not in response.headers:
            return super().process_response(request, response)
        jar_key = request.meta.get("cookiejar")
        before = jar_contents(self.jars[jar_key])
        result = super().process_response(request, response)
        self._changed(runtime, request, jar_key, before)
        return result

    def _changed(self, runtime: CheckpointRuntime, request: Request, jar_key: Any,
                 before: dict[Any, Any]) -> None:
        after = jar_contents(self.jars[jar_key])
        if after != before:
            runtime.cookies.record(request.meta.get(KEY_META), jar_key, before, after)

    def restore(self, runtime: CheckpointRuntime) -> None:
        """Before the first request: the jars as the last commit of earlier runs left them."""
        self.restored = True
        cookies, expired = runtime.cookies.restorable(time.time())
        jars: dict[Any, set[str]] = {}
        for jar_key, cookie in cookies:
            self.jars[jar_key].set_cookie(cookie)
            jars.setdefault(jar_key, set()).add(cookie.name)
        if not (cookies or expired):
            return
        self.crawler.stats.set_value("checkpoint/cookies_restored", len(cookies))
        logger.info(
            "Restored %d cookie(s) from the checkpoint: %s%s", len(cookies),
            "; ".join(f"{describe_jar(k)}: {', '.join(sorted(n))}"  # (in a stable order)
                      for k, n in sorted(jars.items(), key=lambda jar: repr(jar[0])))
            or "none",
            f" ({expired} expired, not restored)" if expired else "",
            extra={"spider": self.crawler.spider},
        )
