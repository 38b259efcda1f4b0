"""The spider-facing API: named cursors that commit with the response that set them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from scrapy_resume.components.lookup import runtime_of

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler


class Checkpoint:
    """A spider's handle on its stage's resumable state.

    Get one with :func:`checkpoint`. Without scrapy-resume enabled, the
    handle keeps cursors in memory only, so spiders run either way.
    """

    def __init__(self, crawler: Crawler):
        self._runtime = runtime_of(crawler)
        self._memory: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self._runtime is not None and self._runtime.active

    def _values(self) -> dict[str, Any]:
        return self._runtime.cursor_values if self._runtime is not None else self._memory

    def get_cursor(self, name: str, default: Any = None) -> Any:
        """The last value set, by this run or by the committed part of earlier ones."""
        return self._values().get(name, default)

    def set_cursor(self, name: str, value: Any, *, response: Any) -> None:
        """Set ``name`` to ``value`` (anything JSON can store).

        The update is committed atomically with ``response``: if the crawl
        dies before that response is fully processed, the resume sees the old
        value and fetches the response again. Pass ``response=None`` for a
        value that belongs to no response (committed at the next commit).
        """
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            message = f"cursor {name!r}: {value!r} cannot be stored as JSON ({exc})"
            raise ValueError(message) from None
        if self._runtime is None:
            self._memory[name] = value
        else:
            self._runtime.set_cursor(name, value, response)

    @property
    def cursors(self) -> dict[str, Any]:
        return dict(self._values())

    @property
    def counters(self) -> dict[str, int]:
        """The stage's counters as of the last commit (done, failed, items, runs...)."""
        if self._runtime is None:
            return {}
        return dict(self._runtime.committer.counter_totals)


def checkpoint(spider_or_crawler: Spider | Crawler) -> Checkpoint:
    """The checkpoint handle of a spider (or crawler)."""
    crawler = getattr(spider_or_crawler, "crawler", spider_or_crawler)
    return Checkpoint(crawler)
