"""Deterministic crash points: a process killed, or given an I/O error, at the
N-th call of one system call, injected by strace (Debian's package).

``strace -f -e trace=SYSCALL -e inject=SYSCALL:signal=SIGKILL:when=N`` kills
the traced program at its N-th SYSCALL; ``:error=ENOSPC:when=N+`` makes that
call and every later one fail. A program doing the same work makes the same
calls in the same order, so point N is the same moment in every run.

Used by tests/integration/test_crash_points.py (a sample of the points) and
bench/crash_points.py (every point).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.crawling import REPO, Crawl

STRACE = shutil.which("strace")

#: What the checkpoint does to its files: SQLite's writes and syncs, renames,
#: links (the secret), unlinks (journals, the WAL), truncations (the feeds).
SYSCALLS = ("pwrite64", "fdatasync", "fsync", "rename", "link", "unlink", "ftruncate")

SITE_SIZE = 60


def injecting(syscall: str, when: str, action: str, trace: str = os.devnull) -> list[str]:
    """The strace prefix of a run that gets ``action`` at the ``when``-th ``syscall``.

    Not under ``--seccomp-bpf``, which would be faster: signals are not injected
    there, and here errors were not either."""
    assert STRACE is not None, "strace is needed: apt-get install strace"
    return [STRACE, "-f", "-qq", "-o", trace, "-e", f"trace={syscall}",
            "-e", f"inject={syscall}:{action}:when={when}"]


def counting(trace: Path) -> list[str]:
    """The strace prefix of a run whose calls are recorded in ``trace``."""
    assert STRACE is not None, "strace is needed: apt-get install strace"
    return [STRACE, "-f", "-qq", "-o", str(trace), "-e", f"trace={','.join(SYSCALLS)}"]


def calls_in(trace: Path) -> Counter:
    """How many times the traced program's main thread made each call (injection
    counts per thread, and the checkpoint's files are all written from it)."""
    lines = trace.read_text().splitlines()
    main = lines[0].split()[0] if lines else ""
    counts: Counter = Counter()
    for line in lines:
        found = re.match(r"(\d+)\s+(\w+)\(", line)
        if found and found.group(1) == main:
            counts[found.group(2)] += 1
    return counts


@dataclass(frozen=True)
class Point:
    # "fresh" (a new stage's whole crawl), "reset" (a RESET run), "command" (checkpoint reset)
    phase: str
    syscall: str
    when: int  # the N-th call
    action: str = "signal=SIGKILL"  # or "error=ENOSPC" (that call and every later one)

    @property
    def label(self) -> str:
        kind = "kill" if self.action.startswith("signal") else self.action.split("=")[1]
        return f"{self.phase}-{self.syscall}-{self.when}-{kind}"


#: The feeds a scenario can write: -o out.jsonl, -o out.json, or JSON batches of 20.
FEEDS = {
    "jsonl": ("out.jsonl", {}),
    "json": ("out.json", {}),
    "batched-json": (None, {"FEEDS": json.dumps({"out-%(batch_id)d.json": {
        "format": "json", "batch_item_count": 20}})}),
}


class Scenario:
    """One small crawl (SITE_SIZE pages, a feed of FEEDS, no timed commit, so every
    run makes the same calls), and the three phases a crash point can hit."""

    def __init__(self, workdir: Path, mockserver, ns: str, feed: str = "jsonl"):
        self.workdir = workdir
        self.mockserver = mockserver
        self.ns = ns
        self.start = mockserver.url(f"{ns}/g/{SITE_SIZE}/3/0")
        self.feed = feed

    def crawl(self, workdir: Path) -> Crawl:
        name, settings = FEEDS[self.feed]
        return Crawl(workdir, "graph", args={"start": self.start}, feed=name,
                     settings={"CHECKPOINT_COMMIT_INTERVAL": "1000", **settings})

    def expected(self) -> list[str]:
        return sorted(self.mockserver.url(f"{self.ns}/g/{SITE_SIZE}/3/{n}")
                      for n in range(SITE_SIZE))

    def prepare(self, workdir: Path, phase: str) -> None:
        """What exists before the phase runs: nothing, or a completed stage."""
        workdir.mkdir(parents=True)
        if phase != "fresh":
            result = self.crawl(workdir).run()
            assert result.finish_reason == "finished", result.log[-3000:]

    def run_phase(
        self, workdir: Path, phase: str, prefix: list[str]
    ) -> subprocess.CompletedProcess:
        if phase == "command":
            cmd = [sys.executable, "-m", "scrapy.cmdline", "checkpoint", "reset", "graph",
                   "--force", "--dir", str(workdir / "checkpoints")]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            return subprocess.run([*prefix, *cmd], cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=120)
        crawl = self.crawl(workdir)
        settings = {"CHECKPOINT_RESET": "1"} if phase == "reset" else {}
        result = crawl.run(prefix=prefix, **settings)
        return subprocess.CompletedProcess([], result.returncode, result.log, "")

    def reference_counts(self, phase: str) -> Counter:
        """How many of each call the phase makes, from one traced run."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            workdir = Path(tmp) / "reference"
            self.prepare(workdir, phase)
            trace = Path(tmp) / "trace.txt"
            done = self.run_phase(workdir, phase, counting(trace))
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            return calls_in(trace)

    def check(self, point: Point) -> None:
        """Run the phase with the fault at ``point``, then carry on as a user would,
        and assert that every item ends in the feed exactly once."""
        workdir = self.workdir / point.label
        self.prepare(workdir, point.phase)
        plus = "+" if point.action.startswith("error") else ""
        trace = workdir / "faulty.trace"
        faulty = self.run_phase(workdir, point.phase, injecting(
            point.syscall, f"{point.when}{plus}", point.action, str(trace)))
        output = faulty.stdout + faulty.stderr
        if point.action.startswith("signal"):
            assert faulty.returncode == -9, f"{point.label} was not killed: {output[-3000:]}"
        else:  # (how it shows depends on the call: SQLite ignores a failed close)
            assert "(INJECTED)" in trace.read_text(), f"{point.label}: no error injected"
        assert "Error caught on signal handler" not in output, output[-3000:]
        if point.phase != "fresh":
            # the old stage stays whole somewhere: in place, or as a backup
            summaries = stage_summaries(workdir / "checkpoints")
            assert SITE_SIZE in [s.done for s in summaries.values()], summaries
            if point.phase == "command" or "Spider closed (finished)" not in output:
                # the user runs the reset again (a finished RESET run did its job);
                # the stage may be gone already: the fault came after its move
                again = self.run_phase(workdir, point.phase, [])
                gone = ("Unknown stage" in again.stderr or "No checkpoints in" in again.stderr)
                assert again.returncode == 0 or gone, again.stderr
        crawl = self.crawl(workdir)
        for _ in range(3):
            result = crawl.run(CHECKPOINT_RESUME="1")
            assert "Error caught on signal handler" not in result.log, result.log[-3000:]
            if result.finish_reason == "finished":
                break
        else:
            raise AssertionError(f"{point.label}: not finished\n{result.log[-3000:]}")
        assert self.feed_urls(workdir) == self.expected(), point.label
        summary = crawl.summary("graph")
        assert (summary.status, summary.done, summary.pending) == ("completed", SITE_SIZE, 0)


    def feed_urls(self, workdir: Path) -> list[str]:
        """Every item's url in the feed (failing if it is not whole and valid)."""
        if self.feed == "jsonl":
            return feed_urls(workdir / "out.jsonl")
        if self.feed == "json":
            return sorted(item["url"] for item in json.loads((workdir / "out.json").read_bytes()))
        batches = sorted(workdir.glob("out-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        assert [p.name for p in batches] == [f"out-{n}.json" for n in (1, 2, 3)], batches
        documents = [json.loads(path.read_bytes()) for path in batches]
        assert [len(d) for d in documents] == [20, 20, 20]
        return sorted(item["url"] for document in documents for item in document)


def stage_summaries(directory: Path) -> dict[str, object]:
    """The summary of every stage file and backup in ``directory``: each one must
    open (a half-made or half-moved stage would not)."""
    from scrapy_resume import CheckpointStore

    summaries = {}
    for path in sorted(directory.glob("graph.sqlite*")):
        if path.name.endswith(("-wal", "-shm", "-journal", ".lock")) or ".new-" in path.name:
            continue
        store = CheckpointStore(path)
        try:
            summaries[path.name] = store.summary()
        finally:
            store.close()
    return summaries


def feed_urls(path: Path) -> list[str]:
    data = path.read_bytes() if path.exists() else b""
    assert not data or data.endswith(b"\n"), "a torn last line"
    return sorted(json.loads(line)["url"] for line in data.splitlines())
