"""CheckpointExtension: a crawl's signals, wired to its stage (lifecycle/) and
its runtime (engine/): open or refuse, resume, commit on a timer, close.

Refusals close the spider from ``spider_opened`` with a named reason, before
any request is sent, and log what to type next. Nothing already saved is
ever deleted: a reset moves the old file aside.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future

from scrapy_resume.components.enabling import half_enabled_message, missing_lines
from scrapy_resume.components.feedformats import check_feeds
from scrapy_resume.components.httperrors import HttpErrorPolicy
from scrapy_resume.components.launcher import Launcher, running_command
from scrapy_resume.components.lookup import RuntimeOwner
from scrapy_resume.components.middleware import has_own_errback
from scrapy_resume.components.progress import ProgressReports
from scrapy_resume.components.queue import (
    queue_key,
    scrapy_redis_keys,
    shared_queue_problems,
    uses_shared_queue,
)
from scrapy_resume.components.remotefeeds import upload_left_batches
from scrapy_resume.components.sharedidle import SharedQueueIdle
from scrapy_resume.components.stagefeeds import FeedChanged, StageFeeds
from scrapy_resume.config import CheckpointConfig, CheckpointConfigError, checkpointing_wanted
from scrapy_resume.engine.batchedfeed import STATE as BATCHES
from scrapy_resume.engine.restore import missing_callbacks
from scrapy_resume.engine.runtime import CheckpointRuntime
from scrapy_resume.engine.spill import Spill
from scrapy_resume.engine.uploads import STATE as UPLOADS
from scrapy_resume.lifecycle.stage import CheckpointRefused, HowTo, OpenedStage, open_stage
from scrapy_resume.lifecycle.validation import crawl_config
from scrapy_resume.store.base import BaseCheckpointStore, describe_error
from scrapy_resume.store.privatefiles import CheckpointUnsafe
from scrapy_resume.store.records import RequestStatus, StageStatus, StageSummary

try:
    from scrapy.utils.asyncio import create_looping_call
except ImportError:  # Scrapy 2.13
    from twisted.internet.task import LoopingCall as create_looping_call  # type: ignore

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler


logger = logging.getLogger(__name__)


class CheckpointExtension(RuntimeOwner):
    def __init__(
        self, crawler: Crawler, config: CheckpointConfig, launcher: Launcher | None = None,
        config_error: str | None = None,
    ):
        self.crawler = crawler
        self.config = config
        self.launcher = launcher or Launcher("crawl")
        self.config_error = config_error  # a bad CHECKPOINT_* value: refused when opening
        self.runtime = CheckpointRuntime(crawler, config)
        self.opened: OpenedStage | None = None  # the locked stage, while it runs
        self.stage = ""
        self.timer: Any = None
        self.progress: ProgressReports | None = None
        self.http_errors = HttpErrorPolicy(crawler)
        # several workers share a scrapy-redis queue: leases, no exclusive lock
        self.shared = uses_shared_queue(crawler.settings)
        self.idle = SharedQueueIdle(crawler, self.runtime)  # (a worker of a shared stage)

    @property
    def store(self) -> BaseCheckpointStore | None:
        return self.opened.store if self.opened is not None else None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CheckpointExtension:
        if not checkpointing_wanted(crawler.settings):
            raise NotConfigured("CHECKPOINT_ENABLED is off")
        launcher = running_command()
        if not launcher.checkpoints:
            logger.info(
                "scrapy %s runs the spider as plain Scrapy: no checkpoint is read or written",
                launcher.command,
            )
            raise NotConfigured(f"scrapy {launcher.command} does not checkpoint")
        try:
            config, error = CheckpointConfig.from_settings(crawler.settings), None
        except CheckpointConfigError as exc:
            # refused when the spider opens, with this message and no traceback
            config, error = CheckpointConfig(enabled=True), str(exc)
        extension = cls(crawler, config, launcher, error)
        runtime = extension.runtime
        connect = crawler.signals.connect
        connect(extension.spider_opened, signal=signals.spider_opened)
        connect(extension.spider_closed, signal=signals.spider_closed)
        connect(runtime.on_request_scheduled, signal=signals.request_scheduled)
        connect(runtime.on_request_dropped, signal=signals.request_dropped)
        connect(extension.response_received, signal=signals.response_received)
        connect(extension.spider_error, signal=signals.spider_error)
        if extension.shared:
            connect(extension.idle.spider_idle, signal=signals.spider_idle)
        # the item signals are connected by the spider middleware: it is built
        # after every extension, so its handler runs after FeedExporter's write
        return extension

    # Signal handlers: thin, the runtime does the work. They take **signal_args
    # (spider, signal, sender): Scrapy's dispatcher then skips filtering them out.

    def response_received(self, response: Any, request: Any, **signal_args: Any) -> None:
        request = response.request or request
        completion = self.runtime.open_completion(response, request, http_status=response.status)
        if (
            completion is not None
            and self.http_errors.ignores(response)
            and not has_own_errback(request, self.crawler.spider)
        ):
            # HttpErrorMiddleware will drop it before the callback: the request failed
            completion.status = RequestStatus.FAILED
            completion.error = f"HttpError: Ignoring non-200 response ({response.status})"

    def spider_error(self, failure: Any, response: Any, **signal_args: Any) -> None:
        if response is None:  # start() itself raised: no callback of a request of ours
            return
        if self.runtime.start_gate is not None and response.request is not None:
            self.runtime.start_gate.release(response.request.meta)  # a start request's callback
        completion = self.runtime.completion_of(response)
        if completion is not None:
            completion.failed_with(describe_error(failure))

    # opening

    def spider_opened(self, spider: Spider) -> None:
        try:
            if self.config_error is not None:
                raise CheckpointRefused("checkpoint_misconfigured", self.config_error)
            runs = self._open(spider)
        except CheckpointRefused as refusal:
            self._refuse(spider, refusal.reason, str(refusal))
        except CheckpointConfigError as exc:
            self._refuse(spider, "checkpoint_misconfigured", str(exc))
        except FeedChanged as exc:
            self._refuse(spider, "checkpoint_feed_changed", str(exc))
        except CheckpointUnsafe as exc:
            self._refuse(spider, "checkpoint_unsafe", str(exc))
        except Exception as exc:
            # a full disk, EIO, CHECKPOINT_DIR naming a file, a read-only directory...:
            # never crawl unprotected
            self._refuse(spider, "checkpoint_unavailable", self._unavailable(exc), exc_info=True)
        if not runs:
            raise CloseSpider("finished")  # a completed stage: nothing to do
        self.timer = create_looping_call(self._commit_or_stop)
        self.timer.start(self.config.commit_interval, now=False)
        self.progress = ProgressReports(self.crawler, self.runtime, self.store, self.stage,
                                        self.config)

    def _refuse(self, spider: Spider, reason: str, message: str, exc_info: bool = False) -> None:
        """Close the spider before any request, leaving the stage and the feeds as they were."""
        self.runtime.active = False
        self._release()
        logger.error("%s", message, exc_info=exc_info, extra={"spider": spider})
        raise CloseSpider(reason)

    def _unavailable(self, error: Exception) -> str:
        where = self.config.backend or f"{self.config.directory} (CHECKPOINT_DIR)"
        return (
            f"Cannot open the checkpoint of stage {self.stage or '?'} in {where}: "
            f"{describe_error(error)}. Nothing was crawled, and nothing already saved was "
            f"changed. Fix the cause (a full disk, a read-only directory, CHECKPOINT_DIR naming "
            f"a file, a feed file that cannot be written), then run the same command again."
        )

    def _open(self, spider: Spider) -> bool:
        """Lock and open the stage and its feeds; False when there is nothing to do."""
        self._check_setup(spider)
        self.stage = self.config.stage_name(spider.name)
        config = crawl_config(spider, self.crawler.settings, self.config.input_files)
        how = self.launcher.how_to(spider.name)
        feeds = StageFeeds(self.config.directory, self.crawler.settings, spider, how,
                           self.crawler)
        self.opened = open_stage(
            self.config, self.stage, spider.name, config, how, {"spider": spider},
            shared=self.shared, move_feeds_aside=feeds.move_aside,
            shared_keys=scrapy_redis_keys(self.crawler.settings, spider.name) if self.shared
            else (),
        )
        if self.opened.nothing_to_do:
            if self.shared:
                # a worker killed after the others finished the stage: its feed still
                # ends with bytes that were never committed
                feeds.cut_back(*self._committed_feeds(), only_this_run=True)
            self._release()
            return False
        warning = self.opened.backend.durability_warning()
        if warning:
            logger.warning("%s", warning, extra={"spider": spider})
        summary = self.opened.summary
        if summary is not None:
            if not self.shared:  # (a shared queue holds its requests)
                self._check_callbacks(spider, how)
            self._repair_feeds(feeds, summary)
        self.opened.begin()
        self.runtime.recovering = self.opened.mode == "recover"
        self.runtime.feed_files = feeds.files
        worker = self.opened.worker
        if worker is not None:
            worker.queue_key = queue_key(self.crawler.settings, spider.name)
        self.runtime.start(self.store, worker)
        if not self.shared:  # (a shared queue keeps its requests in Redis)
            self.runtime.spill = Spill(self.crawler, self.config.directory / f"{self.stage}.spill",
                                       self.config.frontier_memory, self.runtime.batches.callbacks)
        upload_left_batches(self.crawler, self.runtime, spider)  # (a resume's, if any)
        if summary is not None:  # counted before this run: the same requests
            logger.info(
                "Resuming stage %s: %s done, %s failed, %s pending (retrying failed: %s)",
                self.stage, f"{summary.done:,}", f"{summary.failed:,}", f"{summary.pending:,}",
                "yes" if self.config.retry_failed else "no", extra={"spider": spider},
            )
        return True

    def _repair_feeds(self, feeds: StageFeeds, summary: StageSummary) -> None:
        """A resume writes to the feeds the stage started with, cut back to
        their last commit: bytes written after it are exported again."""
        assert self.store is not None
        committed, starts, batches = self._committed_feeds()
        if not self.shared:  # (each worker of a shared stage has feeds of its own)
            feeds.check_same_files(self.stage, committed, summary)
        feeds.cut_back(committed, starts, batches, only_this_run=self.shared)

    def _committed_feeds(self) -> tuple[dict[str, int], dict[str, int], dict[str, dict]]:
        """The stage's feed offsets, where each feed began, and its batched feeds."""
        assert self.store is not None
        state = self.store.state()
        uploaded = {key for key, entry in state.get(UPLOADS, {}).items() if entry["uploaded"]}
        # (an uploaded batch file is removed: nothing is written to it again)
        offsets = {k: v for k, v in self.store.feed_offsets().items() if k not in uploaded}
        return offsets, self.store.feed_starts(), state.get(BATCHES, {})

    def _check_callbacks(self, spider: Spider, how: HowTo) -> None:
        """Every stored request's callback still exists: refused before any is restored."""
        assert self.store is not None
        needed = missing_callbacks(self.store, spider, include_failed=self.config.retry_failed)
        if needed:
            names = ", ".join(f"{name} ({count:,} requests)" for name, count in needed.items())
            raise CheckpointRefused(
                "checkpoint_callback_missing",
                f"Stage {self.stage} has pending requests for callbacks the spider no longer "
                f"has: {names}. Put those methods back (an alias is enough, e.g. "
                f"old_name = new_name in the spider), or start the stage over with "
                f"{how.reset_option}.",
            )

    def _check_setup(self, spider: Spider) -> None:
        if self.crawler.settings.get("JOBDIR"):
            raise CheckpointRefused(
                "checkpoint_jobdir_conflict",
                "JOBDIR and CHECKPOINT_ENABLED are two recovery systems that would fight over "
                "the same crawl. scrapy-resume replaces JOBDIR: remove the JOBDIR setting "
                "(or -s JOBDIR=...), or set CHECKPOINT_ENABLED=False to use JOBDIR alone.",
            )
        missing = missing_lines(self.crawler.settings)
        if missing:
            raise CheckpointRefused("checkpoint_misconfigured", half_enabled_message(missing))
        if self.shared:
            problems = shared_queue_problems(self.crawler.settings, self.config.backend)
            if problems:
                raise CheckpointRefused("checkpoint_misconfigured", "\n".join(problems))
        problems, warnings = check_feeds(
            self.crawler.settings, self.crawler, shared=self.shared,
            unprotected_feeds=self.config.unprotected_feeds,
        )
        if problems:
            raise CheckpointRefused("checkpoint_feed_unsupported", "\n".join(problems))
        for warning in warnings:
            logger.warning("%s", warning, extra={"spider": spider})

    # committing

    def _commit_or_stop(self) -> None:
        self.runtime.commit_or_stop()
        if not self.runtime.active and self.timer is not None and self.timer.running:
            self.timer.stop()

    # closing

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        for timer in (self.timer, self.idle.waiting):
            if timer is not None and timer.running:
                timer.stop()
        if self.store is None or not self.runtime.active:
            self._stop_progress()
            self._release()
            return
        try:
            status = await self._close_stage(reason)
            self._stop_progress()  # (its bar drawn once more, with the last commit's counts)
            if status is None:  # a commit waiting for its hook failed: the crawl stopped
                self._release()
                return
            # a remote feed's batches still uploading: recorded before the stage ends
            await maybe_deferred_to_future(self.runtime.committer.uploads.wait())
            self._end_stage(spider, reason, status)
        except Exception as exc:
            self._stop_progress()
            self._close_failed(spider, exc)

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _close_failed(self, spider: Spider, error: BaseException) -> None:
        # Like a failed commit mid-crawl: the transaction rolled back, nothing
        # more reaches the feeds, and the stage stays as its last commit left it
        # (a resume recovers from there).
        logger.error(
            "Checkpoint commit failed while closing (%s). Everything committed before "
            "this point is resumable with -s CHECKPOINT_RESUME=1; the feeds are cut back "
            "to it then.", describe_error(error), exc_info=error, extra={"spider": spider},
        )
        self.crawler.stats.inc_value("checkpoint/commit_errors")
        self.runtime.abandon_feeds()
        self.runtime.active = False
        self._release()

    async def _close_stage(self, reason: str) -> str | None:
        """The last commit, and the feeds closed; what the stage becomes (None if
        the commit in progress failed: the stage stays as its last commit left it)."""
        assert self.store is not None and self.opened is not None
        self.runtime.settle_completions()
        await self.runtime.commit_async()  # (after a commit waiting for its hook, if any)
        if not self.runtime.active:
            return None
        left_as = self.opened.leave(reason)
        if self.opened.requeued:
            self.crawler.stats.set_value("checkpoint/leases_requeued", self.opened.requeued)
        if reason == "finished" and left_as in (None, StageStatus.COMPLETED):
            self.runtime.settle_refused_requests()
            await self.runtime.commit_async()
        pending = self.store.summary().pending
        status = self.opened.final_status(reason, pending, left_as)
        self.runtime.close_feeds()
        self.runtime.active = False
        if status == StageStatus.COMPLETED:  # a remote feed's last batches: uploaded now
            upload_left_batches(self.crawler, self.runtime, self.crawler.spider, last=True)
        return status

    def _end_stage(self, spider: Spider, reason: str, status: str) -> None:
        assert self.store is not None and self.opened is not None
        try:
            not_uploaded = self.runtime.committer.uploads.not_uploaded()
            if status == StageStatus.COMPLETED and not_uploaded:
                status = StageStatus.PAUSED  # a resume uploads them, and completes it
                logger.error(
                    "Stage %s is not completed: %d batch file(s) could not be uploaded (%s). "
                    "Resume with -s CHECKPOINT_RESUME=1 to upload them.", self.stage,
                    len(not_uploaded), ", ".join(not_uploaded), extra={"spider": spider},
                )
            summary = self.store.summary()
            self.opened.end(reason, status)
            self._publish_stats(summary)
            logger.info(
                "Checkpoint of stage %s saved (%s). %s",
                self.stage,
                summary.describe(status),
                "Resume with -s CHECKPOINT_RESUME=1." if status == StageStatus.PAUSED else "",
                extra={"spider": spider},
            )
        finally:
            self._release()

    def _publish_stats(self, summary: StageSummary) -> None:
        stats = self.crawler.stats
        for name in ("pending", "done", "failed", "dropped", "total"):
            stats.set_value(f"checkpoint/{name}", getattr(summary, name))
        for name, value in summary.counters.items():
            stats.set_value(f"checkpoint/{name}", value)
        duplicates = self.runtime.early_duplicates
        if duplicates is not None and duplicates.dropped:  # this run's, like the commits
            stats.set_value("checkpoint/duplicates_early", duplicates.dropped)
        spill = self.runtime.spill
        if spill is not None and spill.written:  # requests that waited on disk, this run
            stats.set_value("checkpoint/frontier_on_disk", spill.written)

    def _release(self) -> None:
        """Close the store and let another process have the stage."""
        if self.runtime.spill is not None:
            self.runtime.spill.close()
        if self.opened is not None:
            self.opened.release()
            self.opened = None
