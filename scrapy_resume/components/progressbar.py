"""The live progress bar on a terminal: ``CHECKPOINT_PROGRESS_BAR``.

    discovery: 45%|████▌     | 5000/11000 [01:58<02:24, 42.3req/s, failed 12]
    items:     4988 [01:58, 42.1item/s]

Two tqdm bars on stderr, redrawn once a second from the stage's counts (the
first: settled of all known requests, this run's rate, the ETA, the failed
count; the second: items). tqdm, because it is made to share a terminal with
``logging``: Scrapy's console log handler is pointed at a stream that writes
through ``tqdm.write``, which clears the bars, prints the line and redraws
them, so log lines land above the bars, whole. The handler keeps its level,
filters and formatter; it gets its own stream back when the bar closes.

"auto" (the default) shows it when stderr is a terminal and LOG_LEVEL is INFO
or quieter: at DEBUG, Scrapy logs every request, and a bar redrawn between
every two lines is noise. Never on a stream that is not a terminal (a log
file, a pipe, CI): it would be escape codes and carriage returns in a log.
tqdm is an optional extra: ``pip install scrapy-resume[progress]``.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from scrapy_resume.store.records import StageSummary

logger = logging.getLogger(__name__)


def bar_wanted(setting: bool | None, settings: BaseSettings, stream: IO[str]) -> bool:
    """Whether to show the bar: ``setting`` is CHECKPOINT_PROGRESS_BAR (None: auto)."""
    if setting is False:
        return False
    if not stream.isatty():
        if setting:
            logger.warning("CHECKPOINT_PROGRESS_BAR is on, but stderr is not a terminal: "
                           "no bar (the progress line is logged as usual).")
        return False
    if setting is None and logging.getLevelName(settings.get("LOG_LEVEL", "DEBUG")) not in (
        logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL
    ):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        if setting:
            logger.warning("CHECKPOINT_PROGRESS_BAR needs tqdm: pip install "
                           "scrapy-resume[progress]")
        return False
    return True


class ThroughTqdm:
    """A stream for a log handler: each write goes through ``tqdm.write``."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


class ProgressBar:
    def __init__(self, stage: str, summary: StageSummary, stream: IO[str] = sys.stderr):
        from tqdm import tqdm as plain_tqdm

        class tqdm(plain_tqdm):  # noqa: N801
            monitor_interval = 0  # no monitor thread: we redraw from the reactor

        self.stream = stream
        settled = summary.done + summary.failed + summary.dropped
        # initial=: the rate and the ETA count this run's requests only
        self.requests = tqdm(desc=stage, total=settled + summary.pending, initial=settled,
                             unit="req", file=stream, position=0, dynamic_ncols=True,
                             leave=True)
        self.items = tqdm(desc="items", initial=summary.counters.get("items", 0), unit="item",
                          file=stream, position=1, dynamic_ncols=True, leave=True)
        self.redirected: list[tuple[logging.StreamHandler, Any]] = []
        for handler in logging.root.handlers:  # Scrapy's console handler
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                self.redirected.append((handler, handler.setStream(ThroughTqdm(stream))))

    def update(self, summary: StageSummary) -> None:
        settled = summary.done + summary.failed + summary.dropped
        self.requests.total = settled + summary.pending
        self.requests.set_postfix_str(f"failed {summary.failed:,}", refresh=False)
        self.requests.update(settled - self.requests.n)
        self.items.update(summary.counters.get("items", 0) - self.items.n)

    def close(self) -> None:
        self.items.close()
        self.requests.close()
        for handler, stream in self.redirected:
            handler.setStream(stream)
        self.redirected = []
