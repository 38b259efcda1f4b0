"""CheckpointSpiderMiddleware: counts each response's output, restores the frontier.

It must be the outermost spider middleware (order below 25), so that it sees
the final output of every callback, after filtering by the others, and so
that its ``process_start`` runs before StartSpiderMiddleware's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals

from scrapy_resume.components.enabling import has_component
from scrapy_resume.components.middleware import CheckpointMiddleware, middleware_runtime
from scrapy_resume.engine.requestmeta import KEY_META
from scrapy_resume.engine.runtime import CheckpointRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class CheckpointSpiderMiddleware:
    def __init__(self, runtime: CheckpointRuntime | None):
        self.runtime = runtime

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointSpiderMiddleware:
        # the downloader middleware refuses a half set-up, if it is there
        alone = not has_component(crawler.settings, "DOWNLOADER_MIDDLEWARES", CheckpointMiddleware)
        runtime = middleware_runtime(crawler, refuses_if_alone=alone)
        middleware = cls(runtime)
        if runtime is not None:
            # Connected here, after every extension: FeedExporter has written the
            # item when these run, so its bytes can be claimed for its request.
            crawler.signals.connect(middleware.item_scraped, signal=signals.item_scraped)
            crawler.signals.connect(middleware.item_not_scraped, signal=signals.item_dropped)
            crawler.signals.connect(middleware.item_not_scraped, signal=signals.item_error)
        return middleware

    def item_scraped(self, item: Any, response: Any, **signal_args: Any) -> None:
        self.runtime.on_item_scraped(item, response)

    def item_not_scraped(self, item: Any, response: Any, **signal_args: Any) -> None:
        self.runtime.on_item_not_scraped(item, response)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        runtime = self.runtime
        if runtime is None or not runtime.active:
            async for output in start:
                yield output
            return
        gate = runtime.start_gate  # CHECKPOINT_RESTORE_AFTER_START: start() first
        if gate is None:
            async for request in runtime.restored_requests():
                yield request
        async for output in self._start_output(runtime, start):
            yield output
        if gate is not None:
            await gate.wait()  # until start()'s requests are finished (the login)
            async for request in runtime.restored_requests():
                yield request

    @staticmethod
    async def _start_output(runtime: CheckpointRuntime, start: AsyncIterator[Any]
                            ) -> AsyncIterator[Any]:
        gate = runtime.start_gate
        requests = items = 0
        async for output in start:
            if isinstance(output, Request):
                runtime.tag_start_request(output, requests)
                requests += 1
                if gate is not None:
                    gate.hold(output)
                    yield output  # (scheduled, or refused, when start() is resumed)
                    key = output.meta.get(KEY_META)  # (none if it was refused)
                    if key is not None and key in runtime.skipped:  # done in an earlier run
                        gate.release(output.meta)
                    continue
            elif output is not None:
                items += 1
                if not runtime.start_items.should_yield(output, items - 1):
                    continue  # committed by an earlier run
            yield output

    def process_spider_output(
        self, response: Response, result: Iterable[Any], spider: Any = None
    ) -> Iterable[Any]:
        runtime = self.runtime
        if runtime is None:
            return result
        gate = runtime.start_gate
        if gate is not None and gate.holds(response):
            result = gate.released_after(response, result)
        completion = runtime.completion_of(response)
        if completion is None:
            return result
        return completion.iterate(result)

    async def process_spider_output_async(
        self, response: Response, result: AsyncIterator[Any], spider: Any = None
    ) -> AsyncIterator[Any]:
        runtime = self.runtime
        gate = runtime.start_gate if runtime is not None else None
        if gate is not None and gate.holds(response):
            result = gate.released_after_async(response, result)
        completion = runtime.completion_of(response) if runtime is not None else None
        if completion is None:
            async for output in result:
                yield output
            return
        # completion.aiterate() inlined: one async generator per output hop, not two
        duplicates = runtime.early_duplicates
        completion.open_chains += 1
        try:
            async for output in result:
                if duplicates is None or not duplicates.drops(output):
                    yield completion.tag(output)
        finally:
            completion.close_chain()
