"""CheckpointMiddleware: the downloader side, where downloads fail.

It is the outermost downloader middleware, so its ``process_exception`` runs
only after RetryMiddleware has given up. A failed request without an errback
is settled there; one with an errback gets the errback wrapped, because
Scrapy calls errbacks for download errors outside every spider middleware.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import IgnoreRequest, NotConfigured
from twisted.python.failure import Failure

from scrapy_resume.components.enabling import half_enabled_message, missing_lines, refuse_on_open
from scrapy_resume.components.launcher import running_command
from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.config import checkpointing_wanted
from scrapy_resume.engine.requestmeta import KEY_META
from scrapy_resume.store.base import describe_error
from scrapy_resume.store.records import RequestStatus

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.runtime import CheckpointRuntime


def middleware_runtime(crawler: Crawler, *, refuses_if_alone: bool) -> CheckpointRuntime | None:
    """For a middleware's from_crawler: NotConfigured when the package is off; the
    shared state otherwise. Without the extension (which refuses half set-ups),
    the middleware named by ``refuses_if_alone`` makes the crawl refuse to start."""
    if not checkpointing_wanted(crawler.settings):
        raise NotConfigured("CHECKPOINT_ENABLED is off")
    runtime = runtime_of(crawler)
    if runtime is None:
        if not running_command().checkpoints:
            raise NotConfigured("a debugging command runs as plain Scrapy")
        if refuses_if_alone:
            message = half_enabled_message(missing_lines(crawler.settings))
            refuse_on_open(crawler, "checkpoint_misconfigured", message)
    return runtime


def has_own_errback(request: Request, spider: Any) -> bool:
    """Does the spider's own code handle this request's failures?

    CrawlSpider gives every request of its rules an errback of its own, which
    only forwards the failure to the rule's errback: a rule without one leaves
    the failure unhandled, as if the request had no errback. That forwarding
    errback is ``CrawlSpider._errback``, a Scrapy internal, looked up here only;
    ``spider.rules[request.meta["rule"]]`` is the rule (CrawlSpider compiles
    ``rules`` in order). tests/integration/test_ledger.py's CrawlSpider test fails loudly
    if Scrapy changes either.
    """
    errback = request.errback
    if errback is None:
        return False
    from scrapy.spiders import CrawlSpider

    forwarder = getattr(CrawlSpider, "_errback", None)
    if forwarder is None or getattr(errback, "__func__", None) is not forwarder:
        return True
    try:
        return bool(spider.rules[request.meta["rule"]].errback)
    except (AttributeError, IndexError, KeyError, TypeError):
        return True  # cannot tell: trust the errback


class CheckpointMiddleware:
    def __init__(self, runtime: CheckpointRuntime | None, crawler: Crawler | None = None):
        self.runtime = runtime
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointMiddleware:
        return cls(middleware_runtime(crawler, refuses_if_alone=True), crawler)

    def process_exception(
        self, request: Request, exception: Exception, spider: Any = None
    ) -> None:
        runtime = self.runtime
        if runtime is not None and runtime.start_gate is not None:
            runtime.start_gate.release(request.meta)  # a start request failed for good
        if runtime is None or not runtime.active or KEY_META not in request.meta:
            return
        ignored = isinstance(exception, IgnoreRequest)
        status = RequestStatus.DROPPED if ignored else RequestStatus.FAILED
        error = describe_error(exception)
        if not has_own_errback(request, self.crawler.spider if self.crawler else None):
            runtime.settle_without_output(request, status, error)
        else:
            request.errback = self._counting_errback(request, status, error)
        return

    def _counting_errback(self, request: Request, status: RequestStatus, error: str) -> Any:
        original = request.errback
        runtime = self.runtime
        assert runtime is not None and original is not None

        @functools.wraps(original)
        def errback(failure: Failure) -> Any:
            completion = runtime.open_completion(
                failure, request, namespace=b"e", status=status, error=error
            )
            try:
                output = original(failure)
            except Exception as exc:
                if completion is not None:
                    completion.failed_with(describe_error(exc))
                raise
            if completion is None:
                return output
            if isinstance(output, Failure):
                completion.failed_with(describe_error(output))
                return output
            return completion.wrap(output)

        return errback
