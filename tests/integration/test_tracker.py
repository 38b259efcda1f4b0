"""StageTracker: a non-Scrapy step, checkpointed on the same store, run as real
processes (tests/trackers/worker.py) killed and interrupted with real signals."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scrapy_resume import CheckpointStore
from scrapy_resume.tracker import StageTracker
from tests.crawling import Crawl

WORKER = Path(__file__).resolve().parents[1] / "trackers" / "worker.py"
REPO = Path(__file__).resolve().parents[2]


class Worker:
    """The worker script, one checkpoint dir and one log of started keys."""

    def __init__(self, workdir: Path, stage: str = "work"):
        self.workdir = workdir
        self.dir = workdir / "checkpoints"
        self.log = workdir / "started.log"
        self.stage = stage

    def command(self, *flags: str) -> list[str]:
        return [sys.executable, str(WORKER), "--dir", str(self.dir), "--log", str(self.log),
                "--stage", self.stage, *flags]

    def start(self, *flags: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(self.command(*flags), cwd=self.workdir, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run(self, *flags: str) -> tuple[int, str]:
        proc = self.start(*flags)
        output, _ = proc.communicate(timeout=120)
        return proc.returncode, output

    def started(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def wait_for_started(self, count: int, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while len(self.started()) < count:
            assert proc.poll() is None, f"the worker ended before {count} keys were started"
            assert time.monotonic() < deadline, "the worker is too slow"
            time.sleep(0.005)

    def ledger(self) -> dict[str, str]:
        store = CheckpointStore(self.dir / f"{self.stage}.sqlite")
        try:
            return {row["url"]: row["status"] for row in store.ledger_rows()}
        finally:
            store.close()

    def done(self) -> set[str]:
        return {key for key, status in self.ledger().items() if status == "done"}

    def summary(self):
        store = CheckpointStore(self.dir / f"{self.stage}.sqlite")
        try:
            return store.summary()
        finally:
            store.close()


CONCURRENCY = 16
COMMIT_EVERY = 16


def test_sigkill_at_seeded_moments_loses_nothing_and_repeats_only_what_was_in_flight(tmp_path):
    worker = Worker(tmp_path)
    keys = 5000
    flags = ["--keys", str(keys), "--concurrency", str(CONCURRENCY), "--delay-ms", "3",
             "--commit-every", str(COMMIT_EVERY)]
    rng = random.Random(8)
    kill_points = sorted(rng.sample(range(500, 4500), 3))
    in_flight_at_kills: list[set[str]] = []
    for n, point in enumerate(kill_points):
        proc = worker.start(*flags, *(["--resume"] if n else []))
        worker.wait_for_started(point, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert worker.summary().status in ("running", "recovering")
        # started, and not committed as done: repeated by the next run at most
        in_flight = set(worker.started()) - worker.done()
        # at most `concurrency` being processed, and fewer than `commit_every` settled
        # but not yet committed
        assert len(in_flight) <= CONCURRENCY + COMMIT_EVERY - 1, len(in_flight)
        in_flight_at_kills.append(in_flight)

    returncode, output = worker.run(*flags, "--resume")
    assert returncode == 0, output
    assert "was still running when its last run stopped" in output
    ledger = worker.ledger()
    assert len(ledger) == keys and set(ledger.values()) == {"done"}
    assert worker.summary().status == "completed"

    times_started = collections.Counter(worker.started())
    assert set(times_started) == {f"k{n}" for n in range(keys)}
    repeated = {key: count for key, count in times_started.items() if count > 1}
    for key, count in repeated.items():
        kills_in_flight = sum(key in in_flight for in_flight in in_flight_at_kills)
        assert count <= 1 + kills_in_flight, (key, count, kills_in_flight)
    extra = sum(count - 1 for count in repeated.values())
    bound = sum(len(in_flight) for in_flight in in_flight_at_kills)
    assert extra <= bound
    print(f"kills at {kill_points}: in flight {[len(s) for s in in_flight_at_kills]}, "
          f"{len(repeated)} keys processed twice (bound {bound})")


@pytest.mark.parametrize("mode", ["asyncio", "sync"])
def test_a_first_sigint_finishes_the_items_in_flight_and_pauses(tmp_path, mode):
    worker = Worker(tmp_path)
    keys = 3000 if mode == "asyncio" else 600  # the sync loop takes one key at a time
    flags = ["--keys", str(keys), "--delay-ms", "10"] + (["--sync"] if mode == "sync" else [])
    proc = worker.start(*flags)
    worker.wait_for_started(200, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "finishing the items in flight" in output and "STOPPED True ABANDONED False" in output
    assert worker.summary().status == "paused"
    # everything started was finished and saved: nothing is processed twice
    assert set(worker.started()) == worker.done()
    returncode, output = worker.run(*flags, "--resume")
    assert returncode == 0, output
    assert collections.Counter(worker.started()) == {f"k{n}": 1 for n in range(keys)}
    assert worker.summary().status == "completed"


def test_a_second_sigint_abandons_the_items_in_flight(tmp_path):
    worker = Worker(tmp_path)
    # items that take 10 s: still in flight when the second SIGINT comes, however slow
    # the machine
    flags = ["--keys", "3000", "--delay-ms", "10000", "--concurrency", "8"]
    proc = worker.start(*flags)
    worker.wait_for_started(8, proc)
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stdout:  # the first one was handled: not two signals merged into one
        seen.append(line)
        if "finishing the items in flight" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert "abandoning the items in flight" in output and "ABANDONED True" in output
    assert worker.summary().status == "paused"
    abandoned = set(worker.started()) - worker.done()
    assert 0 < len(abandoned) <= 8
    assert all(worker.ledger()[key] == "pending" for key in abandoned)


def test_an_existing_stage_is_refused_without_resume_or_reset(tmp_path):
    worker = Worker(tmp_path)
    assert worker.run("--keys", "50")[0] == 0
    returncode, output = worker.run("--keys", "50")
    assert returncode == 3
    assert "REFUSED checkpoint_exists" in output and "50 done" in output
    assert f"to continue it:   python worker.py --dir {worker.dir} --resume" in output
    returncode, output = worker.run("--keys", "50", "--resume")
    assert returncode == 0 and "already completed" in output and "nothing to do" in output
    assert len(worker.started()) == 50  # nothing processed again
    returncode, output = worker.run("--keys", "50", "--reset")
    assert returncode == 0 and "the old checkpoint was moved to" in output
    assert len(worker.started()) == 100
    assert len(list(worker.dir.glob("work.sqlite.bak-*"))) == 1


def test_a_second_process_on_the_same_stage_is_refused(tmp_path):
    worker = Worker(tmp_path)
    first = worker.start("--keys", "1000", "--delay-ms", "500")
    worker.wait_for_started(1, first)
    returncode, output = worker.run("--keys", "1000", "--resume")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert returncode == 3
    assert "REFUSED checkpoint_locked" in output and f"(pid {first.pid})" in output


def test_retry_failed_processes_exactly_the_failed_keys_again(tmp_path):
    worker = Worker(tmp_path)
    failing = [f"k{n}" for n in range(0, 200, 20)]
    fail_file = tmp_path / "fail.txt"
    fail_file.write_text("\n".join(failing))
    assert worker.run("--keys", "200", "--fail", str(fail_file))[0] == 0
    summary = worker.summary()
    assert (summary.status, summary.done, summary.failed) == ("completed", 190, 10)
    store = CheckpointStore(worker.dir / "work.sqlite")
    errors = {row["url"]: row["error"] for row in store.ledger_rows() if row["error"]}
    store.close()
    assert errors == {key: f"RuntimeError: cannot process {key}" for key in failing}

    returncode, output = worker.run("--keys", "200", "--resume")
    assert returncode == 0 and "nothing to do" in output
    assert len(worker.started()) == 200

    fail_file.write_text("")  # the cause is fixed
    returncode, output = worker.run("--keys", "200", "--fail", str(fail_file), "--resume",
                                    "--retry-failed")
    assert returncode == 0, output
    assert sorted(worker.started()[200:]) == sorted(failing)
    summary = worker.summary()
    assert (summary.status, summary.done, summary.failed) == ("completed", 200, 0)


def test_a_changed_input_file_is_refused(tmp_path):
    worker = Worker(tmp_path)
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(f"k{n}" for n in range(2000)))
    proc = worker.start("--input", str(keys), "--delay-ms", "20")
    worker.wait_for_started(100, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    keys.write_text("\n".join(f"k{n}" for n in range(3000)))
    returncode, output = worker.run("--input", str(keys), "--resume")
    assert returncode == 3
    assert "REFUSED checkpoint_config_changed" in output
    assert f"input file {keys}: its content changed" in output
    assert f"python worker.py --dir {worker.dir} --reset" in output


def test_a_corrupt_stage_is_refused_and_left_untouched(tmp_path):
    worker = Worker(tmp_path)
    assert worker.run("--keys", "3000", "--delay-ms", "0")[0] == 0
    path = worker.dir / "work.sqlite"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    damaged = path.read_bytes()
    returncode, output = worker.run("--keys", "3000", "--resume")
    assert returncode == 3 and "REFUSED checkpoint_corrupt" in output
    assert path.read_bytes() == damaged


def test_a_tracker_must_be_open_and_settings_are_checked(tmp_path):
    tracker = StageTracker("enrich", dir=tmp_path)
    with pytest.raises(RuntimeError, match="is not open"):
        tracker.done("k1")
    with pytest.raises(Exception, match="CHECKPOINT_COMMIT_INTERVAL"):
        StageTracker("enrich", dir=tmp_path, commit_interval=-1)
    with pytest.raises(Exception, match="not a valid stage name"):
        StageTracker("../escape", dir=tmp_path)


def test_cursors_counters_and_info_are_kept(tmp_path):
    with StageTracker("upload", dir=tmp_path) as tracker:
        for row in tracker.pending([{"id": 1}, {"id": 2}, {"id": 3}], key=lambda r: r["id"]):
            tracker.done(row["id"], rows=row["id"] * 10)
            tracker.set_cursor("last_id", row["id"])
            tracker.count("uploaded")
    store = CheckpointStore(tmp_path / "upload.sqlite")
    try:
        assert store.cursors() == {"last_id": 3}
        assert store.counters()["uploaded"] == 3
        assert [(r["url"], r["info"]) for r in store.ledger_rows()] == [
            ("1", {"rows": 10}), ("2", {"rows": 20}), ("3", {"rows": 30})
        ]
        assert store.summary().status == "completed"
    finally:
        store.close()
    # resuming a completed stage, like a completed crawl, has nothing to do
    with StageTracker("upload", dir=tmp_path, resume=True) as tracker:
        assert tracker.nothing_to_do
        assert list(tracker.pending([{"id": 1}, {"id": 4}], key=lambda r: r["id"])) == []


def test_the_cli_shows_tracker_stages_beside_spider_stages(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": f"{mockserver.url(ns)}/g/30/2/0"})
    assert crawl.run().finish_reason == "finished"
    worker = Worker(tmp_path, stage="enrich")
    worker.dir = crawl.workdir / "checkpoints"
    assert worker.run("--keys", "40")[0] == 0

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "scrapy.cmdline", "checkpoint", *args, "--dir",
             str(worker.dir)], capture_output=True, text=True, cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = {row["stage"]: row for row in json.loads(cli("list", "--json"))}
    assert listed["graph"]["done"] == 30 and listed["enrich"]["done"] == 40
    assert listed["enrich"]["spider"] == "(StageTracker)"
    shown = cli("show", "enrich")
    assert "Stage enrich (StageTracker): completed" in shown
    assert f"resume: python worker.py --dir {worker.dir} --resume" in shown
    exported = [json.loads(line) for line in cli("export", "enrich").splitlines()]
    assert len(exported) == 40 and exported[0]["info"] == {"length": 2}
    report = cli("report")
    assert "enrich" in report and "graph" in report
