"""StageTracker: checkpoint a plain Python or asyncio step on the same store.

A pipeline often has steps that are not Scrapy crawls: an asyncio enrichment
over a spider's output, an uploader working through a CSV. A tracker gives
such a step the spider stages' guarantees, in the same checkpoint directory
(so ``scrapy checkpoint list/show/export/report`` show it too)::

    with StageTracker("upload", dir="output/checkpoints", resume=True) as tracker:
        for row in tracker.pending(rows, key=lambda row: row["id"]):
            upload(row)
            tracker.done(row["id"])

    async with StageTracker("enrich", dir="output/checkpoints", resume=True) as tracker:
        await tracker.map(enrich, urls, concurrency=16)

Outcomes are committed in groups (every ``commit_interval`` seconds), so a
crash repeats at most the items in flight and those finished since the last
commit. The first SIGINT/SIGTERM stops handing out items, lets the ones in
flight finish and saves (``paused``); a second one abandons them and saves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from scrapy.settings import Settings

from scrapy_resume.config import CheckpointConfig
from scrapy_resume.lifecycle.stage import HowTo, OpenedStage, open_stage
from scrapy_resume.lifecycle.validation import input_file_digests
from scrapy_resume.store.base import describe_error
from scrapy_resume.store.records import (
    CommitBatch,
    KeyIndex,
    NewRequest,
    RequestStatus,
    Settlement,
    StageStatus,
)

logger = logging.getLogger(__name__)

#: Shown as the stage's "spider" by ``scrapy checkpoint``.
TRACKER_OWNER = "(StageTracker)"


def ledger_key(key: Any) -> bytes:
    """A user's key (any str, int, bytes...) as a fixed-size ledger key."""
    raw = key if isinstance(key, bytes) else str(key).encode()
    return hashlib.sha1(b"tracker:" + raw).digest()


class StageTracker:
    """Checkpoints the items of one non-Scrapy stage: which are done or failed,
    with cursors and counters, in ``DIR/STAGE.sqlite``.

    The arguments mirror the settings: ``dir`` (CHECKPOINT_DIR), ``resume``,
    ``reset``, ``retry_failed``, ``input_files``, ``commit_interval``,
    ``fsync``, ``stale_days``. A commit also happens once ``commit_every``
    outcomes are waiting, which bounds what a crash can repeat. ``config`` is
    any JSON-able dict that must be the same on a resume (like a spider's
    arguments). ``resume_command``,
    ``reset_command`` and ``retry_command`` say how to run this step again
    (e.g. ``python enrich.py --resume``), quoted by refusals and by
    ``scrapy checkpoint show``; by default they show the constructor call.
    """

    def __init__(
        self,
        stage: str,
        *,
        dir: str | Path | None = None,  # noqa: A002 - mirrors CHECKPOINT_DIR
        resume: bool = False,
        reset: bool = False,
        retry_failed: bool = False,
        input_files: Iterable[str | Path] = (),
        config: dict[str, Any] | None = None,
        commit_interval: float = 0.5,
        commit_every: int = 1000,
        fsync: bool = False,
        stale_days: float = 7.0,
        resume_command: str | None = None,
        reset_command: str | None = None,
        retry_command: str | None = None,
        handle_signals: bool = True,
    ):
        settings = Settings({
            "CHECKPOINT_ENABLED": True,
            "CHECKPOINT_STAGE": stage,
            "CHECKPOINT_DIR": str(dir) if dir is not None else None,
            "CHECKPOINT_RESUME": resume,
            "CHECKPOINT_RESET": reset,
            "CHECKPOINT_RETRY_FAILED": retry_failed,
            "CHECKPOINT_INPUT_FILES": [str(p) for p in input_files],
            "CHECKPOINT_COMMIT_INTERVAL": commit_interval,
            "CHECKPOINT_FSYNC": fsync,
            "CHECKPOINT_STALE_DAYS": stale_days,
        })
        self.config = CheckpointConfig.from_settings(settings)  # same checks, same messages
        self.stage = self.config.stage_name(stage)
        self.user_config = dict(config or {})
        call = f"StageTracker({stage!r}, "
        self.how = HowTo(
            resume=resume_command or call + "resume=True)",
            reset=reset_command or call + "reset=True)",
            reset_option=reset_command or "reset=True",
            retry=retry_command or call + "resume=True, retry_failed=True)",
        )
        self.handle_signals = handle_signals
        if commit_every < 1:
            raise ValueError(f"commit_every must be at least 1, not {commit_every}")
        self.commit_every = commit_every
        self.opened: OpenedStage | None = None
        self.finished: KeyIndex | frozenset[bytes] = frozenset()
        self.cursor_values: dict[str, Any] = {}
        self.stopping = False  # a first SIGINT/SIGTERM: hand out no more items
        self.abandoning = False  # a second one: drop the items in flight too
        self.nothing_to_do = False
        self.completed = False  # after closing: did the stage end completed?
        self.in_flight: dict[bytes, str] = {}  # ledger key -> label, handed out, not settled
        self.exhausted = False  # a pending() iteration reached the end of its items
        self._batch = CommitBatch()
        self._last_commit = time.monotonic()
        self._previous_handlers: dict[int, Any] = {}
        self._workers: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # opening and closing

    def open(self) -> StageTracker:
        run_config = {
            "arguments": self.user_config,
            "input_files": input_file_digests(self.config.input_files),
        }
        self.opened = open_stage(self.config, self.stage, TRACKER_OWNER, run_config, self.how)
        if self.opened.nothing_to_do:
            self.opened.release()
            self.opened = None
            self.nothing_to_do = self.completed = True
            return self
        store = self.opened.store
        self.finished = store.finished_index(include_failed=not self.config.retry_failed)
        self.finished = self.finished or frozenset()
        self.cursor_values = store.cursors()
        self.opened.begin()
        if self.handle_signals:
            self._install_signal_handlers()
        return self

    def close(self, error: BaseException | None = None) -> None:
        """Save everything settled, and record how the stage ended."""
        self._restore_signal_handlers()
        if self.opened is None:
            return
        try:
            self.commit()
            summary = self.opened.store.summary()
            if error is not None and not isinstance(error, (KeyboardInterrupt, SystemExit)):
                status, reason = StageStatus.FAILED, describe_error(error)
            elif self.exhausted and not self.in_flight and not self.stopping and not error:
                status, reason = StageStatus.COMPLETED, "finished"
            else:
                status, reason = StageStatus.PAUSED, "shutdown"
            self.opened.end(reason, status)
            self.completed = status == StageStatus.COMPLETED
            logger.info(
                "Checkpoint of stage %s saved (%s).%s", self.stage, summary.describe(status),
                f" Resume with: {self.how.resume}" if status != StageStatus.COMPLETED else "",
            )
        finally:
            self.opened.release()
            self.opened = None

    def __enter__(self) -> StageTracker:
        return self.open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    async def __aenter__(self) -> StageTracker:
        self._loop = asyncio.get_running_loop()
        return self.open()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    # handing out items

    def pending(
        self, items: Iterable[Any], key: Callable[[Any], Any] | None = None
    ) -> Iterator[Any]:
        """The items not done yet (failed ones too, with ``retry_failed``), in order.

        ``key(item)`` names an item in the ledger (default: the item itself).
        Call :meth:`done` or :meth:`failed` with that key for each item.
        """
        key = key or (lambda item: item)
        if self.nothing_to_do:
            self.exhausted = True
            return
        for item in items:
            if self.stopping:
                return
            user_key = key(item)
            lkey = ledger_key(user_key)
            if lkey in self.finished or lkey in self.in_flight:
                continue  # done before (or a repeat of an item in flight)
            label = str(user_key)
            self.in_flight[lkey] = label
            self._batch.new_requests.append(NewRequest(lkey, label, None))
            yield item
        self.exhausted = True

    async def map(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any],
        *,
        key: Callable[[Any], Any] | None = None,
        concurrency: int = 16,
    ) -> None:
        """``await fn(item)`` for every pending item, ``concurrency`` at a time.

        Each outcome is recorded: done (a dict returned by ``fn`` is kept as the
        key's info), or failed with the exception ``fn`` raised.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        key = key or (lambda item: item)
        todo = self.pending(items, key)

        async def worker() -> None:
            for item in todo:  # shared by the workers: each takes the next item
                user_key = key(item)
                try:
                    result = await fn(item)
                except asyncio.CancelledError:
                    raise  # abandoned: stays pending, done again on resume
                except Exception as exc:
                    self.failed(user_key, exc)
                else:
                    self.done(user_key, **(result if isinstance(result, dict) else {}))
                await asyncio.sleep(0)  # let the other workers take items too

        self._workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            self._workers = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError
            ):
                raise result

    # recording outcomes

    def done(self, key: Any, **info: Any) -> None:
        self._settle(key, RequestStatus.DONE, None, info)

    def failed(self, key: Any, error: BaseException | str) -> None:
        self._settle(key, RequestStatus.FAILED, describe_error(error), {})

    def _settle(self, key: Any, status: RequestStatus, error: str | None, info: dict) -> None:
        self._check_open()
        lkey = ledger_key(key)
        label = self.in_flight.pop(lkey, None) or str(key)
        self._batch.settlements.append(
            Settlement(lkey, status, label, error=error, info=info or None)
        )
        self.count(status.name.lower())
        self.commit_if_due()

    def set_cursor(self, name: str, value: Any) -> None:
        """Saved with the next commit; any JSON-able value."""
        self.cursor_values[name] = value
        self._batch.cursors[name] = value

    def get_cursor(self, name: str, default: Any = None) -> Any:
        return self.cursor_values.get(name, default)

    def count(self, name: str, delta: int = 1) -> None:
        counters = self._batch.counters
        counters[name] = counters.get(name, 0) + delta

    # committing

    def commit_if_due(self) -> None:
        if (
            len(self._batch.settlements) >= self.commit_every
            or time.monotonic() - self._last_commit >= self.config.commit_interval
        ):
            self.commit()

    def commit(self) -> None:
        self._check_open()
        assert self.opened is not None
        batch, self._batch = self._batch, CommitBatch()
        if batch:
            self.opened.store.commit(batch)
            if self.opened.mode == "recover":  # the crashed run's work is behind us
                self.opened.mode = "resume"
                self.opened.store.set_status(StageStatus.RUNNING)
        self._last_commit = time.monotonic()

    def _check_open(self) -> None:
        if self.opened is None:
            raise RuntimeError(
                f"StageTracker {self.stage!r} is not open: use it as `with StageTracker(...) "
                f"as tracker:` (or `async with`), or call open() first"
            )

    # signals

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are only delivered to the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            self.stopping = True
            logger.info(
                "Received %s: finishing the items in flight, then saving stage %s. Send it "
                "again to abandon them.", name, self.stage,
            )
            return
        logger.info("Received %s again: abandoning the items in flight.", name)
        self.abandoning = True
        if self._workers and self._loop is not None:
            for task in self._workers:
                self._loop.call_soon_threadsafe(task.cancel)
            return
        raise KeyboardInterrupt  # a synchronous loop: out of the user's code, to close()

