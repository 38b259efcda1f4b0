"""The progress line a long crawl logs every CHECKPOINT_PROGRESS_INTERVAL seconds.

    Checkpoint discovery: 45.5% (5,000/11,000 requests) | ok 98.2% | 42.3 req/s |
    ETA 2m24s | committed 0.4s ago

The rate counts only requests settled by this run, over a recent window, so
the done requests a resume skips in a burst do not inflate it.
"""

from __future__ import annotations

import time
from collections import deque

from scrapy_resume.store.records import StageSummary

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

