"""Opening a stage, the same way for spiders and for StageTrackers.

Lock the stage, choose how to run it (fresh, resume or recover), refuse what
must not run with a reason and a message that says what to type next, and
check that a resume runs with the configuration the stage started with.
Nothing already saved is deleted: a reset moves the old file aside.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy_resume.config import CheckpointConfig
from scrapy_resume.lifecycle.validation import differences, missing_input_files
from scrapy_resume.store.backends import backend_for
from scrapy_resume.store.base import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    Lock,
    StageBackend,
)
from scrapy_resume.store.records import CommitBatch, StageStatus, StageSummary, format_age
from scrapy_resume.store.signing import RequestSigner

if TYPE_CHECKING:
    from scrapy_resume.store.redis.leases import StageWorker

logger = logging.getLogger(__name__)


class CheckpointRefused(Exception):
    """The stage must not run. ``reason`` names why (a spider's close reason);
    the message says what to do next."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HowTo:
    """How the user asks for each mode, quoted in messages."""

    resume: str  # e.g. "scrapy crawl NAME -s CHECKPOINT_RESUME=1"
    reset: str  # e.g. "scrapy crawl NAME -s CHECKPOINT_RESET=1"
    reset_option: str  # e.g. "-s CHECKPOINT_RESET=1"
    retry: str  # e.g. "scrapy crawl NAME -s CHECKPOINT_RESUME=1 -s CHECKPOINT_RETRY_FAILED=1"


@dataclass
class OpenedStage:
    """A locked stage and its store, ready to run."""

    stage: str
    store: BaseCheckpointStore
    lock: Lock
    backend: StageBackend
    mode: str  # fresh, resume, recover, join, or completed (nothing to do: release it)
    summary: StageSummary | None  # before this run; None when fresh
    shared: bool = field(default=False)  # several workers crawl it: ``lock`` is a StageWorker
    run_id: int = field(default=0)
    requeued: int = field(default=0)  # a shared stage's requests put back when leaving it

    @property
    def nothing_to_do(self) -> bool:
        return self.mode == "completed"

    @property
    def worker(self) -> StageWorker | None:
        """A shared stage's membership (it takes the lock's place), else None."""
        return self.lock if self.shared else None  # type: ignore[return-value]

    def begin(self) -> None:
        self.run_id = self.store.begin_run(self.mode)
        recovering = self.mode == "recover"
        self.store.set_status(StageStatus.RECOVERING if recovering else StageStatus.RUNNING)

    def leave(self, reason: str) -> str | None:
        """A shared stage's worker leaves it, its own leases back in the queue
        (requests in flight at a forced close). The last worker to leave
        decides what the stage becomes: returned here. None for a single
        process: see final_status."""
        worker = self.worker
        if worker is None:
            return None
        self.requeued = worker.requeue_own()
        worker.release()  # deregistered first: of two last workers, one sees no other
        if worker.live_workers():
            return StageStatus.RUNNING
        if reason == "finished" and not worker.outstanding() and not worker.queued():
            return StageStatus.COMPLETED
        return StageStatus.PAUSED

    @staticmethod
    def final_status(reason: str, pending: int, left_as: str | None) -> str:
        """What the stage is once this run ends: what its last worker left it
        as (a shared stage), else completed when the crawl finished with nothing
        pending, and paused otherwise (a resume carries on)."""
        if left_as is not None:
            return left_as
        return StageStatus.COMPLETED if reason == "finished" and pending == 0 else (
            StageStatus.PAUSED
        )

    def end(self, reason: str, status: str) -> None:
        self.store.set_status(status)
        self.store.end_run(self.run_id, reason)

    def release(self) -> None:
        """Close the store and let another process have the stage."""
        self.store.close()
        self.lock.release()
        self.backend.close()


def open_stage(
    config: CheckpointConfig,
    stage: str,
    owner: str,
    run_config: dict,
    how: HowTo,
    log_extra: dict[str, Any] | None = None,
    *,
    shared: bool = False,
    move_feeds_aside: Callable[[dict[str, int]], None] | None = None,
    shared_keys: Sequence[str] = (),
) -> OpenedStage:
    """Lock and open ``stage`` for ``owner`` (a spider name, or a tracker's label).

    ``shared``: several workers crawl the stage together (scrapy-redis); instead
    of locking it, this one joins it, and a stage other live workers are
    running is joined as it is ("join" mode).

    Raises CheckpointRefused (the stage is unlocked again). A completed stage
    with nothing to retry comes back locked, in mode "completed": the caller
    does what must be done under the lock, then releases it. A reset calls
    ``move_feeds_aside`` with the old feed offsets, then moves the stage aside
    with the ``shared_keys`` (scrapy-redis's queue and dupefilter).
    """
    extra = log_extra or {}
    move_feeds_aside = move_feeds_aside or (lambda feeds: None)
    backend = backend_for(config)
    lock = backend.lock(stage, shared=shared)
    try:
        lock.acquire()
    except CheckpointLocked as exc:
        backend.close()
        raise CheckpointRefused("checkpoint_locked", locked_message(stage, exc)) from None
    store = None
    try:
        RequestSigner(config.directory).secret  # a missing secret is made now, a bad one refused
        others = getattr(lock, "others", None)
        joined = _join(config, stage, backend, others, how, extra) if others else None
        reset_feeds: dict[str, int] = {}
        if joined is not None:
            store, mode, summary = joined
        else:
            store, mode, summary, reset_feeds = _choose_mode(config, stage, backend, how, extra)
        commands = {"resume": how.resume, "retry": how.retry}  # quoted by `scrapy checkpoint show`
        if mode == "reset":
            _start_over(stage, backend, lambda: move_feeds_aside(reset_feeds), shared_keys, extra)
            mode = "fresh"
        if mode == "fresh":
            store = _create(backend, stage, owner, run_config, commands)
        elif mode != "completed":
            assert store is not None and summary is not None
            _check_resume(config, stage, store, summary, run_config, how, extra)
            store.commit(CommitBatch(state={"commands": commands}))
    except BaseException:
        if store is not None:
            store.close()
        lock.release()
        backend.close()
        raise
    return OpenedStage(stage, store, lock, backend, mode, summary, shared=shared)


def _start_over(stage: str, backend: StageBackend, move_feeds_aside: Callable[[], None],
                shared_keys: Sequence[str], extra: dict) -> None:
    """CHECKPOINT_RESET: keep the old stage as a backup. Its feeds go first:
    killed in between, the stage is still there to reset again. scrapy-redis's
    queue and dupefilter go with it: left, the new crawl would find every link
    "seen" by the old one, and fetch nothing but its start requests."""
    move_feeds_aside()
    backup = backend.move_aside(stage, shared_keys)
    logger.warning(
        "CHECKPOINT_RESET: stage %s starts over; the old checkpoint was moved to %s%s",
        stage, backup,
        f" (with scrapy-redis's {', '.join(shared_keys)})" if shared_keys else "", extra=extra,
    )


def _create(
    backend: StageBackend, stage: str, owner: str, run_config: dict, commands: dict[str, str]
) -> BaseCheckpointStore:
    missing = missing_input_files(run_config)
    if missing:
        raise CheckpointRefused(
            "checkpoint_misconfigured",
            f"CHECKPOINT_INPUT_FILES lists files that do not exist: {', '.join(missing)}",
        )
    return backend.create(stage, owner, {"config": run_config, "commands": commands})


def locked_message(stage: str, exc: CheckpointLocked) -> str:
    if exc.pid == str(os.getpid()):
        return (
            f"Stage {stage} is already being run by this process: two crawlers of one stage "
            f"in one CrawlerProcess would write the same checkpoint. Give each crawler its own "
            f"stage (CHECKPOINT_STAGE in its settings)."
        )
    return (
        f"Stage {stage} is being run by another process (pid {exc.pid}): {exc}. Wait for it "
        f"to finish, or stop it first (one process per stage)."
    )


def _choose_mode(
    config: CheckpointConfig, stage: str, backend: StageBackend, how: HowTo, extra: dict
) -> tuple[BaseCheckpointStore | None, str, StageSummary | None, dict[str, int]]:
    path = backend.location(stage)
    if not backend.exists(stage):
        if config.resume:
            logger.info(
                "CHECKPOINT_RESUME: stage %s has no checkpoint yet (%s); starting a fresh "
                "crawl", stage, path, extra=extra,
            )
        return None, "fresh", None, {}
    if config.reset:
        feeds = feed_offsets_if_readable(backend, stage)
        return None, "reset", None, feeds
    store = None
    try:
        store = backend.open(stage)
        summary = store.summary()
    except CheckpointCorrupt as exc:
        if store is not None:
            store.close()
        raise CheckpointRefused(
            "checkpoint_corrupt",
            f"The checkpoint of stage {stage} cannot be read ({exc}). It was left untouched. "
            f"To start this stage over, run again with {how.reset_option} (the broken file "
            f"is moved aside, not deleted).",
        ) from None
    try:
        if not config.resume:
            raise CheckpointRefused(
                "checkpoint_exists",
                f"Stage {stage} already has a checkpoint at {path}: {summary.describe()}.\n"
                f"    to continue it:   {how.resume}\n"
                f"    to start over:    {how.reset} (the old checkpoint is kept as a backup)",
            )
    except BaseException:
        store.close()
        raise
    if summary.status == StageStatus.COMPLETED:
        if config.retry_failed and summary.failed:
            return store, "resume", summary, {}  # finished; now only its failures are retried
        logger.info(
            "Stage %s is already completed (%s): nothing to do. Use %s to run it again "
            "from scratch.", stage, summary.describe(), how.reset_option, extra=extra,
        )
        return store, "completed", summary, {}
    if summary.status in (StageStatus.RUNNING, StageStatus.RECOVERING):
        logger.warning(
            "Stage %s was still %s when its last run stopped: that run crashed or was "
            "killed. Recovering from its last commit.", stage, summary.status, extra=extra,
        )
        return store, "recover", summary, {}
    return store, "resume", summary, {}


def feed_offsets_if_readable(backend: StageBackend, stage: str) -> dict[str, int]:
    """The feeds of a stage about to be reset ({} if it cannot be read: a corrupt file)."""
    try:
        store = backend.open(stage)
    except CheckpointCorrupt:
        return {}
    try:
        return store.feed_offsets()
    except CheckpointCorrupt:
        return {}
    finally:
        store.close()


def _join(
    config: CheckpointConfig, stage: str, backend: StageBackend, others: list[str], how: HowTo,
    extra: dict,
) -> tuple[BaseCheckpointStore, str, StageSummary] | None:
    """Other workers are crawling the stage: this one joins them. None when
    the stage is not running (the other workers are still opening it, or
    refused): the usual rules apply then."""
    if config.reset:
        raise CheckpointRefused(
            "checkpoint_locked",
            f"Stage {stage} is being crawled by {len(others)} live worker(s) "
            f"({', '.join(others)}): a reset would pull the checkpoint from under them. Stop "
            f"them first, then run again with {how.reset_option}.",
        )
    deadline = time.monotonic() + 30
    while True:
        # the first worker may still be creating the stage
        if backend.exists(stage):
            store = backend.open(stage)
            summary = store.summary()
            if summary.status != StageStatus.INITIALIZED:
                break
            store.close()
        if time.monotonic() > deadline:
            raise CheckpointRefused(
                "checkpoint_locked",
                f"Stage {stage} has live workers ({', '.join(others)}) but was not started "
                f"after 30 s. Check those workers' logs.",
            )
        time.sleep(0.1)
    if summary.status not in (StageStatus.RUNNING, StageStatus.RECOVERING):
        store.close()
        return None
    logger.info(
        "Joining stage %s, crawled by %d other live worker(s): %s (%s)",
        stage, len(others), ", ".join(others), summary.describe(), extra=extra,
    )
    return store, "join", summary


def _check_resume(
    config: CheckpointConfig,
    stage: str,
    store: BaseCheckpointStore,
    summary: StageSummary,
    run_config: dict,
    how: HowTo,
    extra: dict,
) -> None:
    """Same configuration as when the stage started; warn when it is old."""
    recorded = store.state().get("config", run_config)
    changed = differences(recorded, run_config)
    if changed:
        raise CheckpointRefused(
            "checkpoint_config_changed",
            f"Stage {stage} was started with another configuration:\n"
            + "".join(f"    {line}\n" for line in changed)
            + f"Resume with the same arguments, settings and input files, or start the "
            f"stage over with {how.reset_option}.",
        )
    age_days = (time.time() - summary.updated_at) / 86400
    if age_days > config.stale_days:
        logger.warning(
            "The checkpoint of stage %s was last updated %s ago (more than "
            "CHECKPOINT_STALE_DAYS=%s): the site may have changed since.",
            stage, format_age(age_days * 86400), config.stale_days, extra=extra,
        )
