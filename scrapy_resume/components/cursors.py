"""The spider- and pipeline-facing API: named cursors that commit with the
response that set them, and stable item ids."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.itemids import content_item_id

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


def item_id(item: Any, spider_or_crawler: Spider | Crawler) -> str:
    """The id of ``item``, the same when a crash makes the crawl yield it again.

    Call it from a pipeline's ``process_item`` (the item is in flight then):
    it is the item's request key and its position in that response's output
    (``start-N`` for the N-th item of ``start()``). Upsert on it, and a write
    repeated after a crash replaces the row instead of adding one. Without
    the checkpoint, or for an item the spider did not yield (a pipeline
    replaced it), the id is made from the item's content.
    """
    crawler = getattr(spider_or_crawler, "crawler", spider_or_crawler)
    runtime = runtime_of(crawler)
    if runtime is None or not runtime.active:
        return content_item_id(item)
    return runtime.item_id(item)


def checkpoint(spider_or_crawler: Spider | Crawler) -> Checkpoint:
    """The checkpoint handle of a spider (or crawler)."""
    crawler = getattr(spider_or_crawler, "crawler", spider_or_crawler)
    return Checkpoint(crawler)
