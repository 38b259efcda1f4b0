"""The commit hook: what lets a pipeline flush its writes before the
checkpoint marks the requests behind them done (signals.checkpoint_before_commit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydispatch.dispatcher import getAllReceivers, liveReceivers
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.python.failure import Failure

from scrapy_resume.signals import checkpoint_before_commit

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class CommitHookFailed(Exception):
    """A checkpoint_before_commit handler raised: its items may not be written."""


class CommitHook:
    def __init__(self, crawler: Crawler):
        self.crawler = crawler

    def wanted(self, item_ids: list[str]) -> bool:
        """Is there a handler to call for a batch committing ``item_ids``?"""
        if not item_ids:
            return False
        receivers = getAllReceivers(self.crawler.signals.sender, checkpoint_before_commit)
        return any(True for _ in liveReceivers(receivers))

    async def run(self, item_ids: list[str]) -> None:
        """Call every handler and wait for them; raise if any of them failed."""
        signals = self.crawler.signals
        arguments: dict[str, Any] = {"item_ids": item_ids, "spider": self.crawler.spider}
        if hasattr(signals, "send_catch_log_async"):
            results = await signals.send_catch_log_async(checkpoint_before_commit, **arguments)
        else:  # Scrapy 2.13
            results = await maybe_deferred_to_future(
                signals.send_catch_log_deferred(checkpoint_before_commit, **arguments)
            )
        failed = [(receiver, error) for receiver, error in results
                  if isinstance(error, (BaseException, Failure))]
        if failed:
            receiver, error = failed[0]
            if isinstance(error, Failure):
                error = error.value
            name = getattr(receiver, "__qualname__", repr(receiver))
            raise CommitHookFailed(
                f"{len(failed)} checkpoint_before_commit handler(s) failed, first {name}: "
                f"{type(error).__name__}: {error}"
            ) from error
