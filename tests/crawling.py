"""Running test spiders as real `scrapy runspider` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scrapy_resume import BaseCheckpointStore, CheckpointStore, RequestStatus
from scrapy_resume.components.enabling import (
    COMPONENTS,
    COOKIES,
    FEED_STORAGE_PATH,
    SCRAPY_COOKIES_PATH,
)
from scrapy_resume.store.redis.backend import RedisBackend

REPO = Path(__file__).resolve().parent.parent
SPIDERS = Path(__file__).resolve().parent / "spiders"

ADDON = {"ADDONS": json.dumps({"scrapy_resume.Addon": 0})}
# the manual set-up: the same table the add-on and the refusal message use
def manual_setup() -> dict[str, str]:
    settings: dict[str, dict] = {}
    for component in COMPONENTS:
        settings.setdefault(component.setting, {})[component.path] = component.priority
    # the cookies middleware, in the place of Scrapy's
    settings[COOKIES.setting].update({COOKIES.path: COOKIES.priority, SCRAPY_COOKIES_PATH: None})
    return {
        "CHECKPOINT_ENABLED": "1",
        **{name: json.dumps(value) for name, value in settings.items()},
        "FEED_STORAGES": json.dumps({"": FEED_STORAGE_PATH, "file": FEED_STORAGE_PATH}),
    }


MANUAL = manual_setup()
ENABLING = {"addon": ADDON, "manual": MANUAL, "off": {}}


@dataclass
class RunResult:
    returncode: int
    log: str
    stats: dict

    @property
    def finish_reason(self) -> str | None:
        """From the log: the spider's closed() runs before Scrapy records it in the stats."""
        found = re.findall(r"Spider closed \((\w+)\)", self.log)
        return found[-1] if found else None


class Crawl:
    """One spider, one checkpoint dir, one feed, run as many times as a test needs."""

    def __init__(
        self,
        workdir: Path,
        spider: str,
        *,
        enable: str = "addon",
        args: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,
        feed: str | None = "items.jsonl",
        more_feeds: tuple[str, ...] = (),
        overwrite: bool = False,
        backend: str = "",
        relative: bool = False,
    ):
        self.workdir = workdir
        self.backend = backend  # "" for SQLite files, else a Redis URL
        self.spider_file = SPIDERS / f"{spider}.py"
        self.args = args or {}
        # relative: the feed and CHECKPOINT_DIR are given relative to the working
        # directory, as in a project (which can then be moved or copied)
        self.relative = relative
        self.settings = {
            "LOG_LEVEL": "INFO",
            "TELNETCONSOLE_ENABLED": "0",
            "CHECKPOINT_DIR": "checkpoints" if relative else str(workdir / "checkpoints"),
            "CHECKPOINT_COMMIT_INTERVAL": "0.2",
            **ENABLING[enable],
            **({"CHECKPOINT_BACKEND": backend} if backend else {}),
            **(settings or {}),
        }
        self.feed = workdir / feed if feed else None
        self.more_feeds = [workdir / name for name in more_feeds]
        self.feed_flag = "-O" if overwrite else "-o"
        self.runs = 0

    def command(self, settings: dict[str, str]) -> list[str]:
        cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider", str(self.spider_file)]
        for name, value in {**self.settings, **settings}.items():
            cmd += ["-s", f"{name}={value}"]
        # relative to the working directory: several workers of one stage pass the same
        # arguments (a resume or a join compares them), each writing its own file
        for name, value in {**self.args, "stats_file": self.stats_path.name}.items():
            cmd += ["-a", f"{name}={value}"]
        for feed in [self.feed, *self.more_feeds] if self.feed else self.more_feeds:
            cmd += [self.feed_flag, feed.name if self.relative else str(feed)]
        return cmd

    @property
    def stats_path(self) -> Path:
        # the same argument every run: a changed spider argument refuses a resume
        return self.workdir / "stats.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"run-{self.runs}.log"

    def start(self, prefix: list[str] | tuple[str, ...] = (), **settings: str) -> subprocess.Popen:
        """``prefix``: a program the crawl runs under (strace, in tests/faults.py)."""
        self.runs += 1
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = self.log_path.open("w")
        return subprocess.Popen(
            [*prefix, *self.command(settings)], cwd=self.workdir, env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )

    def finish(self, proc: subprocess.Popen, timeout: float = 120) -> RunResult:
        proc.wait(timeout)
        stats = {}
        if self.stats_path.exists():
            stats = json.loads(self.stats_path.read_text())
            self.stats_path.rename(self.workdir / f"stats-{self.runs}.json")
        return RunResult(proc.returncode, self.log_path.read_text(), stats)

    def run(self, timeout: float = 120, prefix: list[str] | tuple[str, ...] = (),
            **settings: str) -> RunResult:
        return self.finish(self.start(prefix, **settings), timeout)

    def items(self) -> list[dict]:
        if self.feed is None or not self.feed.exists():
            return []
        return [json.loads(line) for line in self.feed.read_text().splitlines()]

    def store_path(self, stage: str) -> Path:
        return self.workdir / "checkpoints" / f"{stage}.sqlite"

    def open_store(self, stage: str) -> BaseCheckpointStore:
        if not self.backend:
            return CheckpointStore(self.store_path(stage))
        return RedisBackend(self.backend, self.workdir / "checkpoints").open(stage)

    def ledger(self, stage: str) -> dict[str, RequestStatus]:
        """url -> status of every request the stage's checkpoint knows."""
        store = self.open_store(stage)
        try:
            return {url: status for _, status, url in store.ledger()}
        finally:
            store.close()

    def done_urls(self, stage: str) -> set[str]:
        """The URLs the stage has committed as done; none before its file exists
        (opening a SQLite stage that is not there would create one)."""
        if not self.backend and not self.store_path(stage).exists():
            return set()
        return {url for url, status in self.ledger(stage).items() if status == RequestStatus.DONE}

    def summary(self, stage: str):
        store = self.open_store(stage)
        try:
            return store.summary()
        finally:
            store.close()


def was_killed(result: RunResult, sig: int = signal.SIGKILL) -> bool:
    return result.returncode == -sig


def kill_after(crawl: Crawl, mockserver, ns: str, hits: int, **arm: object) -> RunResult:
    """Run ``crawl`` and SIGKILL it when the server has answered ``hits`` more requests
    (``arm`` may narrow that to one path, or delay the kill)."""
    proc = crawl.start()
    mockserver.arm(ns, proc.pid, signal="KILL", at=hits, **arm)
    result = crawl.finish(proc)
    assert was_killed(result), result.log[-3000:]
    return result


def kill_once(crawl: Crawl, mockserver, ns: str, hits: int, ready) -> RunResult:
    """Run ``crawl`` and SIGKILL it once the server has answered ``hits`` requests and
    ``ready()`` is true (say, a commit has written what the test needs: commits come
    every 0.5 s, and a fast crawl makes many requests before the first one)."""
    proc = crawl.start()
    mockserver.wait_for_hits(ns, hits)
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, "the crawl ended before it was ready to be killed"
        assert time.monotonic() < deadline, "never ready to be killed"
        time.sleep(0.05)
    proc.kill()
    result = crawl.finish(proc)
    assert was_killed(result), result.log[-3000:]
    return result


def press_ctrl_c_again(crawl, proc, timeout: float = 60) -> None:
    """The second Ctrl+C of a double Ctrl+C, sent once the first one is logged.

    Two signals sent back to back can reach the process as one (a pending
    signal is not counted twice), so this waits for Scrapy's answer to the
    first. The first must come from an arm with ``hold=1``: the held pages
    keep the graceful stop draining until the second one lands.
    """
    deadline = time.monotonic() + timeout
    while "shutting down gracefully" not in crawl.log_path.read_text():
        assert proc.poll() is None, "the crawl ended before its first Ctrl+C was logged"
        assert time.monotonic() < deadline, "the first Ctrl+C was never logged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)


def run_until_finished(
    crawl, mockserver, ns, rng, *, interruptions, stage, at=(150, 450), after_each=None
):
    """Start, interrupt once per entry of ``interruptions`` (arm options such as
    ``{"signal": "KILL"}``) after a seeded number of hits, resume until finished.

    After every run, asserts that nothing done before that run was downloaded
    again, and calls ``after_each(result)``. Returns ``[(result, hits of that run)]``.
    """
    done_before: set[str] = set()
    previous: dict[str, int] = {}
    runs = []
    while True:
        proc = crawl.start(**({"CHECKPOINT_RESUME": "1"} if runs else {}))
        twice = False
        if len(runs) < len(interruptions):
            options = dict(interruptions[len(runs)])
            twice = options.pop("twice", False)
            if twice:
                options.update(signal="INT", hold="1")
            mockserver.arm(ns, proc.pid, at=rng.randint(*at), **options)
        if twice:
            press_ctrl_c_again(crawl, proc)
        result = crawl.finish(proc)
        if twice:
            mockserver.release(ns)
        hits = mockserver.hits(ns)
        run_hits = {p: n - previous.get(p, 0) for p, n in hits.items() if n > previous.get(p, 0)}
        previous = hits
        refetched_done = {p for p in run_hits if mockserver.url(p) in done_before}
        assert refetched_done == set(), f"run {len(runs) + 1} downloaded done pages again"
        runs.append((result, run_hits))
        if after_each is not None:
            after_each(result)
        done_before = crawl.done_urls(stage)
        if result.finish_reason == "finished":
            return runs
        assert len(runs) <= len(interruptions), result.log[-3000:]


def scrapy_checkpoint(*args: str, cwd, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``scrapy checkpoint ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "scrapy.cmdline", "checkpoint", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, input=stdin,
    )


def graph_page(ns: str, size: int, fanout: int, n: int = 0) -> str:
    """The path of page ``n`` of the mock server's graph site (tests/mockserver.py)."""
    return f"/{ns}/g/{size}/{fanout}/{n}"


def graph_pages(mockserver, ns: str, size: int, fanout: int) -> list[str]:
    """Every page URL of a graph site, sorted: what a finished crawl has fetched."""
    return sorted(mockserver.url(graph_page(ns, size, fanout, n)) for n in range(size))


def graph_crawl(workdir: Path, mockserver, ns: str, size: int, fanout: int = 5, *,
                args: dict[str, str] | None = None, **kwargs) -> Crawl:
    """The graph spider (tests/spiders/graph.py) over a graph site of ``size`` pages."""
    start = mockserver.url(graph_page(ns, size, fanout))
    return Crawl(workdir, "graph", args={"start": start, **(args or {})}, **kwargs)
