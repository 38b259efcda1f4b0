"""The progress line a long crawl logs every CHECKPOINT_PROGRESS_INTERVAL seconds,
and the live bar on a terminal (progressbar.py), both run by ProgressReports.

    Checkpoint discovery: 45.5% (5,000/11,000 requests) | ok 98.2% | 42.3 req/s |
    ETA 2m24s | committed 0.4s ago

The rate counts only requests settled by this run, over a recent window, so
the done requests a resume skips in a burst do not inflate it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

try:
    from scrapy.utils.asyncio import create_looping_call
except ImportError:  # Scrapy 2.13
    from twisted.internet.task import LoopingCall as create_looping_call  # type: ignore

from scrapy_resume.components.progressbar import ProgressBar, bar_wanted
from scrapy_resume.store.records import StageSummary

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from scrapy_resume.config import CheckpointConfig
    from scrapy_resume.engine.runtime import CheckpointRuntime
    from scrapy_resume.store.base import BaseCheckpointStore

logger = logging.getLogger(__name__)
BAR_PERIOD = 1.0  # seconds between two redraws of the bar

WINDOW = 6  # samples: the rate is measured over the last few intervals


class Progress:
    def __init__(self, stage: str):
        self.stage = stage
        # (time, requests settled by this run); the first sample is the run's start
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)], maxlen=WINDOW)

    def line(self, summary: StageSummary, settled_this_run: int, last_commit: float) -> str:
        now = time.monotonic()
        self.samples.append((now, settled_this_run))
        settled = summary.done + summary.failed + summary.dropped
        total = settled + summary.pending
        percent = 100 * settled / total if total else 100.0
        judged = summary.done + summary.failed
        ok = f"{100 * summary.done / judged:.1f}%" if judged else "-"
        (then, before), (_, latest) = self.samples[0], self.samples[-1]
        rate = (latest - before) / (now - then) if now > then else 0.0
        if summary.pending == 0:
            eta = "0s"
        elif rate > 0:
            eta = format_duration(summary.pending / rate)
        else:
            eta = "unknown"
        committed = f"{now - last_commit:.1f}s ago" if last_commit else "not yet"
        return (
            f"Checkpoint {self.stage}: {percent:.1f}% ({settled:,}/{total:,} requests) | "
            f"ok {ok} | {rate:.1f} req/s | ETA {eta} | committed {committed}"
        )


def format_duration(seconds: float) -> str:
    """``2m24s``, ``1h05m``, ``3d4h``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"



class ProgressReports:
    """The stage's progress line in the log, and its bar on a terminal, while it runs."""

    def __init__(self, crawler: Crawler, runtime: CheckpointRuntime, store: BaseCheckpointStore,
                 stage: str, config: CheckpointConfig):
        self.crawler = crawler
        self.runtime = runtime
        self.store = store
        self.progress = Progress(stage)
        self.timers: list[Any] = [create_looping_call(self.log_line)]
        self.timers[0].start(config.progress_interval, now=False)
        self.bar: ProgressBar | None = None
        if bar_wanted(config.progress_bar, crawler.settings, sys.stderr):
            self.bar = ProgressBar(stage, store.summary())
            self.timers.append(create_looping_call(self.redraw))
            self.timers[1].start(BAR_PERIOD, now=False)

    def log_line(self) -> None:
        if not self.runtime.active:
            return
        line = self.progress.line(self.store.summary(), self.runtime.committer.settled_this_run,
                                  self.runtime.committer.last_commit)
        logger.info("%s", line, extra={"spider": self.crawler.spider})

    def redraw(self) -> None:
        if self.bar is not None and self.runtime.active:
            self.bar.update(self.store.summary())

    def stop(self) -> None:
        for timer in self.timers:
            if timer.running:
                timer.stop()
        if self.bar is not None:
            try:
                self.bar.update(self.store.summary())  # the last counts; the bar stays
            finally:
                self.bar.close()  # (and the log handler gets its stream back)
                self.bar = None
