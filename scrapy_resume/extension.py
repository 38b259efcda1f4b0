"""The stage lifecycle: open or refuse, resume, commit on a timer, close.

Refusals close the spider from ``spider_opened`` with a named reason, before
any request is sent, and log what to type next. Nothing already saved is
ever deleted: a reset moves the old file aside.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.defer import deferred_from_coro

from .config import CheckpointConfig
from .enabling import half_enabled_message, has_component, missing_lines
from .feeds import FeedChanged, check_feeds, truncate_to_committed
from .middleware import describe_error
from .progress import Progress
from .runtime import CheckpointRuntime, close_spider
from .sqlite_store import CheckpointStore, StageLock
from .store import (
    CheckpointCorrupt,
    CheckpointLocked,
    CommitBatch,
    RequestStatus,
    StageStatus,
    StageSummary,
    format_age,
)
from .validation import crawl_config, differences, missing_input_files

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


class HttpErrorPolicy:
    """Mirrors Scrapy's HttpErrorMiddleware.process_spider_input (httperror.py), which
    drops non-2xx responses before the callback unless allowed, so that such a
    request is recorded as failed. No public API tells which responses it drops."""

    def __init__(self, crawler: Crawler):
        from scrapy.spidermiddlewares.httperror import HttpErrorMiddleware

        settings = crawler.settings
        self.crawler = crawler
        self.enabled = has_component(settings, "SPIDER_MIDDLEWARES", HttpErrorMiddleware)
        self.allow_all = settings.getbool("HTTPERROR_ALLOW_ALL")
        self.allowed = settings.getlist("HTTPERROR_ALLOWED_CODES")

    def ignores(self, response: Any) -> bool:
        if not self.enabled or 200 <= response.status < 300:
            return False
        meta = response.meta
        if meta.get("handle_httpstatus_all", False):
            return False
        if "handle_httpstatus_list" in meta:
            allowed = meta["handle_httpstatus_list"]
        elif self.allow_all:
            return False
        else:
            allowed = getattr(self.crawler.spider, "handle_httpstatus_list", self.allowed)
        return response.status not in allowed


class CheckpointExtension:
    def __init__(self, crawler: Crawler, config: CheckpointConfig):
        self.crawler = crawler
        self.config = config
        self.runtime = CheckpointRuntime(crawler, config)
        self.store: CheckpointStore | None = None
        self.stage = ""
        self.run_id = 0
        self.timer: Any = None
        self.lock: StageLock | None = None
        self.progress: Progress | None = None
        self.progress_timer: Any = None
        self.http_errors = HttpErrorPolicy(crawler)

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
        request = response.request or request
        tracker = self.runtime.open_tracker(response, request, http_status=response.status)
        if tracker is not None and request.errback is None and self.http_errors.ignores(response):
            # HttpErrorMiddleware will drop it before the callback: the request failed
            tracker.status = RequestStatus.FAILED
            tracker.error = f"HttpError: Ignoring non-200 response ({response.status})"

    def spider_error(self, failure: Any, response: Any, spider: Any = None) -> None:
        tracker = self.runtime.tracker_for(response)
        if tracker is not None:
            tracker.failed_with(describe_error(failure))

    # opening

    def spider_opened(self, spider: Spider) -> None:
        try:
            self._open(spider)
        except Refusal as refusal:
            self._release()
            logger.error("%s", refusal, extra={"spider": spider})
            raise CloseSpider(refusal.reason) from None
        self.timer = create_looping_call(self._commit_or_stop)
        self.timer.start(self.config.commit_interval, now=False)
        self.progress = Progress(self.stage)
        self.progress_timer = create_looping_call(self._log_progress)
        self.progress_timer.start(self.config.progress_interval, now=False)

    def _log_progress(self) -> None:
        if self.store is None or not self.runtime.active or self.progress is None:
            return
        line = self.progress.line(
            self.store.summary(), self.runtime.settled_this_run, self.runtime.last_commit
        )
        logger.info("%s", line, extra={"spider": self.crawler.spider})

    def _open(self, spider: Spider) -> None:
        self._check_setup(spider)
        self.stage = self.config.stage_name(spider.name)
        path = self.config.stage_path(spider.name)
        self.lock = StageLock(path)
        try:
            self.lock.acquire()
        except CheckpointLocked as exc:
            self.lock = None
            raise Refusal(
                "checkpoint_locked",
                f"Stage {self.stage} is being crawled by another process (pid {exc.pid}): "
                f"{exc}. Wait for it to finish, or stop it first (one process per stage).",
            ) from None
        mode, summary = self._choose_mode(path, spider)
        config = crawl_config(spider, self.crawler.settings, self.config.input_files)
        if mode == "fresh":
            missing = missing_input_files(config)
            if missing:
                raise Refusal(
                    "checkpoint_misconfigured",
                    f"CHECKPOINT_INPUT_FILES lists files that do not exist: {', '.join(missing)}",
                )
            self.store = CheckpointStore(path, fsync=self.config.fsync)
            self.store.initialize(self.stage, spider.name)
            self.store.commit(CommitBatch(state={"config": config}))
        else:
            assert summary is not None
            self._check_resume(config, spider, summary)
        assert self.store is not None
        self.run_id = self.store.begin_run(mode)
        self.runtime.recovering = mode == "recover"
        self.store.set_status(StageStatus.RECOVERING if mode == "recover" else StageStatus.RUNNING)
        self.runtime.start(self.store)
        if summary is not None:  # counted before this run: the same requests
            logger.info(
                "Resuming stage %s: %s done, %s failed, %s pending (retrying failed: %s)",
                self.stage, f"{summary.done:,}", f"{summary.failed:,}", f"{summary.pending:,}",
                "yes" if self.config.retry_failed else "no", extra={"spider": spider},
            )

    def _check_setup(self, spider: Spider) -> None:
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

    def _choose_mode(self, path: Path, spider: Spider) -> tuple[str, StageSummary | None]:
        """fresh, resume or recover, with the existing stage's summary; or a refusal.

        The summary counts every request (one scan of the ledger): it is read once."""
        if not CheckpointStore.exists(path):
            if self.config.resume:
                logger.info(
                    "CHECKPOINT_RESUME: stage %s has no checkpoint yet (%s); starting a fresh "
                    "crawl", self.stage, path, extra={"spider": spider},
                )
            return "fresh", None
        if self.config.reset:
            backup = CheckpointStore.move_aside(path)
            logger.warning(
                "CHECKPOINT_RESET: stage %s starts over; the old checkpoint was moved to %s",
                self.stage, backup, extra={"spider": spider},
            )
            return "fresh", None
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
            raise Refusal("checkpoint_exists", self._exists_message(path, summary))
        if summary.status == StageStatus.COMPLETED:
            if self.config.retry_failed and summary.failed:
                return "resume", summary  # the crawl finished; now only its failures are retried
            self._release()
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
            return "recover", summary
        return "resume", summary

    def _check_resume(self, config: dict, spider: Spider, summary: StageSummary) -> None:
        """Before a resume: same crawl, feeds as committed. (Each stored request is
        verified as it is restored, before it is unpickled.)"""
        assert self.store is not None
        recorded = self.store.state().get("config", config)
        changed = differences(recorded, config)
        if changed:
            raise Refusal(
                "checkpoint_config_changed",
                f"Stage {self.stage} was started with another configuration:\n"
                + "".join(f"    {line}\n" for line in changed)
                + "Resume with the same arguments, settings and input files, or start the "
                "stage over with -s CHECKPOINT_RESET=1.",
            )
        age_days = (time.time() - summary.updated_at) / 86400
        if age_days > self.config.stale_days:
            logger.warning(
                "The checkpoint of stage %s was last updated %s ago (more than "
                "CHECKPOINT_STALE_DAYS=%s): the site may have changed since.",
                self.stage, format_age(age_days * 86400), self.config.stale_days,
                extra={"spider": spider},
            )
        try:
            truncate_to_committed(self.store.feed_offsets())
        except FeedChanged as exc:
            raise Refusal("checkpoint_feed_changed", str(exc)) from None

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
            deferred_from_coro(close_spider(self.crawler, "checkpoint_write_error"))

    # closing

    def spider_closed(self, spider: Spider, reason: str) -> None:
        for timer in (self.timer, self.progress_timer):
            if timer is not None and timer.running:
                timer.stop()
        if self.store is None or not self.runtime.active:
            self._release()
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
        self._publish_stats(summary)
        logger.info(
            "Checkpoint of stage %s saved (%s). %s",
            self.stage,
            summary.describe(status),
            "Resume with -s CHECKPOINT_RESUME=1." if status == StageStatus.PAUSED else "",
            extra={"spider": spider},
        )
        self._release()

    def _publish_stats(self, summary: StageSummary) -> None:
        stats = self.crawler.stats
        for name in ("pending", "done", "failed", "dropped", "total"):
            stats.set_value(f"checkpoint/{name}", getattr(summary, name))
        for name, value in summary.counters.items():
            stats.set_value(f"checkpoint/{name}", value)

    def _release(self) -> None:
        """Close the store and let another process have the stage."""
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
