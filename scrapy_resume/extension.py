"""The stage lifecycle: open or refuse, resume, commit on a timer, close.

Refusals close the spider from ``spider_opened`` with a named reason, before
any request is sent, and log what to type next. Nothing already saved is
ever deleted: a reset moves the old file aside.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.defer import deferred_from_coro

from .config import CheckpointConfig
from .enabling import half_enabled_message, missing_lines
from .feeds import FeedChanged, check_feeds, truncate_to_committed
from .runtime import CheckpointRuntime
from .store import CheckpointCorrupt, CheckpointStore, StageStatus, StageSummary

try:
    from scrapy.utils.asyncio import create_looping_call
except ImportError:  # Scrapy 2.13
    from twisted.internet.task import LoopingCall as create_looping_call  # type: ignore

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class Refusal(Exception):
    """The stage must not run; ``reason`` becomes the spider's close reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CheckpointExtension:
    def __init__(self, crawler: Crawler, config: CheckpointConfig):
        self.crawler = crawler
        self.config = config
        self.runtime = CheckpointRuntime(crawler, config)
        self.store: CheckpointStore | None = None
        self.stage = ""
        self.run_id = 0
        self.timer: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointExtension:
        config = CheckpointConfig.from_settings(crawler.settings)
        if not config.enabled:
            raise NotConfigured("CHECKPOINT_ENABLED is off")
        extension = cls(crawler, config)
        runtime = extension.runtime
        connect = crawler.signals.connect
        connect(extension.spider_opened, signal=signals.spider_opened)
        connect(extension.spider_closed, signal=signals.spider_closed)
        connect(runtime.on_request_scheduled, signal=signals.request_scheduled)
        connect(runtime.on_request_dropped, signal=signals.request_dropped)
        connect(extension.response_received, signal=signals.response_received)
        connect(extension.spider_error, signal=signals.spider_error)
        # the item signals are connected by the spider middleware: it is built
        # after every extension, so its handler runs after FeedExporter's write
        return extension

    # signal handlers: thin, the runtime does the work

    def response_received(self, response: Any, request: Any, spider: Any = None) -> None:
        self.runtime.open_tracker(response, response.request or request, http_status=response.status)

    def spider_error(self, failure: Any, response: Any, spider: Any = None) -> None:
        tracker = self.runtime.tracker_for(response)
        if tracker is not None:
            tracker.failed_with(f"{failure.type.__name__}: {failure.value}")

    # opening

    def spider_opened(self, spider: Spider) -> None:
        try:
            self._open(spider)
        except Refusal as refusal:
            logger.error("%s", refusal, extra={"spider": spider})
            raise CloseSpider(refusal.reason) from None
        self.timer = create_looping_call(self._commit_or_stop)
        self.timer.start(self.config.commit_interval, now=False)

    def _open(self, spider: Spider) -> None:
        if self.crawler.settings.get("JOBDIR"):
            raise Refusal(
                "checkpoint_jobdir_conflict",
                "JOBDIR and CHECKPOINT_ENABLED are two recovery systems that would fight over "
                "the same crawl. scrapy-resume replaces JOBDIR: remove the JOBDIR setting "
                "(or -s JOBDIR=...), or set CHECKPOINT_ENABLED=False to use JOBDIR alone.",
            )
        missing = missing_lines(self.crawler.settings)
        if missing:
            raise Refusal("checkpoint_misconfigured", half_enabled_message(missing))
        problems, warnings = check_feeds(self.crawler.settings)
        if problems:
            raise Refusal("checkpoint_feed_unsupported", "\n".join(problems))
        for warning in warnings:
            logger.warning("%s", warning, extra={"spider": spider})
        self.stage = self.config.stage_name(spider.name)
        path = self.config.stage_path(spider.name)
        mode = "fresh"
        if CheckpointStore.exists(path):
            if self.config.reset:
                backup = CheckpointStore.move_aside(path)
                logger.warning(
                    "CHECKPOINT_RESET: stage %s starts over; the old checkpoint was moved to %s",
                    self.stage, backup, extra={"spider": spider},
                )
            else:
                mode = self._resume_mode(path, spider)
        elif self.config.resume:
            logger.info(
                "CHECKPOINT_RESUME: stage %s has no checkpoint yet (%s); starting a fresh crawl",
                self.stage, path, extra={"spider": spider},
            )
        if mode == "fresh":
            self.store = CheckpointStore(path, fsync=self.config.fsync)
            self.store.initialize(self.stage, spider.name)
        assert self.store is not None
        if mode != "fresh":
            try:
                truncate_to_committed(self.store.feed_offsets())
            except FeedChanged as exc:
                self._close_store()
                raise Refusal("checkpoint_feed_changed", str(exc)) from None
        self.run_id = self.store.begin_run(mode)
        self.runtime.recovering = mode == "recover"
        self.store.set_status(StageStatus.RECOVERING if mode == "recover" else StageStatus.RUNNING)
        self.runtime.start(self.store)
        if mode != "fresh":
            summary = self.store.summary()
            logger.info(
                "Resuming stage %s: %s done, %s failed, %s pending (retrying failed: no)",
                self.stage, f"{summary.done:,}", f"{summary.failed:,}", f"{summary.pending:,}",
                extra={"spider": spider},
            )

    def _resume_mode(self, path: Any, spider: Spider) -> str:
        try:
            self.store = CheckpointStore(path, fsync=self.config.fsync)
            summary = self.store.summary()
        except CheckpointCorrupt as exc:
            raise Refusal(
                "checkpoint_corrupt",
                f"The checkpoint of stage {self.stage} cannot be read ({exc}). It was left "
                f"untouched. To start this stage over, run again with -s CHECKPOINT_RESET=1 "
                f"(the broken file is moved aside, not deleted).",
            ) from None
        if not self.config.resume:
            self._close_store()
            raise Refusal("checkpoint_exists", self._exists_message(path, summary))
        if summary.status == StageStatus.COMPLETED:
            self._close_store()
            logger.info(
                "Stage %s is already completed (%s): nothing to do. "
                "Use -s CHECKPOINT_RESET=1 to crawl it again from scratch.",
                self.stage, summary.describe(), extra={"spider": spider},
            )
            raise CloseSpider("finished")
        if summary.status in (StageStatus.RUNNING, StageStatus.RECOVERING):
            logger.warning(
                "Stage %s was still %s when its last run stopped: that run crashed or was "
                "killed. Recovering from its last commit.",
                self.stage, summary.status, extra={"spider": spider},
            )
            return "recover"
        return "resume"

    def _exists_message(self, path: Any, summary: StageSummary) -> str:
        return (
            f"Stage {self.stage} already has a checkpoint at {path}: {summary.describe()}.\n"
            f"    to continue it:   scrapy crawl {summary.spider} -s CHECKPOINT_RESUME=1\n"
            f"    to start over:    scrapy crawl {summary.spider} -s CHECKPOINT_RESET=1 "
            f"(the old checkpoint is kept as a backup)"
        )

    # committing

    def _commit_or_stop(self) -> None:
        try:
            self.runtime.commit()
        except Exception as exc:
            # The failed transaction rolled back: everything committed before it
            # is intact and resumable. Stop instead of crawling unprotected.
            logger.error(
                "Checkpoint commit failed (%s); stopping the crawl. Everything committed "
                "before this point is resumable with -s CHECKPOINT_RESUME=1.",
                exc, exc_info=True, extra={"spider": self.crawler.spider},
            )
            self.crawler.stats.inc_value("checkpoint/commit_errors")
            self.runtime.active = False
            if self.timer is not None and self.timer.running:
                self.timer.stop()
            deferred_from_coro(self._close_spider("checkpoint_write_error"))

    async def _close_spider(self, reason: str) -> None:
        engine = self.crawler.engine
        if hasattr(engine, "close_spider_async"):
            await engine.close_spider_async(reason=reason)
        else:  # Scrapy 2.13
            await engine.close_spider(self.crawler.spider, reason)

    # closing

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        if self.store is None or not self.runtime.active:
            self._close_store()
            return
        self.runtime.settle_complete_trackers()
        self.runtime.commit()
        self.runtime.close_feeds()
        self.runtime.active = False
        summary = self.store.summary()
        if reason == "finished" and summary.pending == 0:
            status = StageStatus.COMPLETED
        else:
            status = StageStatus.PAUSED
        self.store.set_status(status)
        self.store.end_run(self.run_id, reason)
        self._publish_stats(self.store.summary())
        logger.info(
            "Checkpoint of stage %s saved (%s). %s",
            self.stage,
            summary.describe().replace(f"status {summary.status}", f"status {status}"),
            "Resume with -s CHECKPOINT_RESUME=1." if status == StageStatus.PAUSED else "",
            extra={"spider": spider},
        )
        self._close_store()

    def _publish_stats(self, summary: StageSummary) -> None:
        stats = self.crawler.stats
        for name in ("pending", "done", "failed", "dropped", "total"):
            stats.set_value(f"checkpoint/{name}", getattr(summary, name))
        for name, value in summary.counters.items():
            stats.set_value(f"checkpoint/{name}", value)

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
