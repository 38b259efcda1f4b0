"""How a component finds the crawl's checkpoint runtime.

The extension owns the runtime; every other component (the middlewares, the
feed storage, the queue, cursors) asks the crawler for it with Scrapy's public
``crawler.get_extension()``, by this marker base class, so that none of them
imports the extension.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.runtime import CheckpointRuntime


class RuntimeOwner:
    """Base class of the extension that holds the crawl's runtime."""

    runtime: CheckpointRuntime | None = None


def runtime_of(crawler: Crawler) -> CheckpointRuntime | None:
    """The crawler's shared checkpoint state, or None if the extension is missing."""
    owner = crawler.get_extension(RuntimeOwner)
    return owner.runtime if owner is not None else None
