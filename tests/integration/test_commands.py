"""`scrapy checkpoint ...`, run as a real subprocess against checkpoints made by real crawls."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.crawling import SPIDERS, Crawl, kill_after, scrapy_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, mockserver):
    """Four stages in one directory: completed, paused, completed with failures, crashed."""
    workdir = tmp_path_factory.mktemp("cli")
    ns = mockserver.namespace()
    site = mockserver.url(f"{ns}/g/40/3/0")
    Crawl(workdir, "graph", args={"start": site}, feed="complete.jsonl",
          settings={"CHECKPOINT_STAGE": "complete"}).run()
    slow = mockserver.namespace()
    mockserver.configure(slow, delay_ms=100)
    paused = Crawl(workdir, "graph", args={"start": mockserver.url(f"{slow}/g/400/3/0")},
                   feed="paused.jsonl", settings={"CHECKPOINT_STAGE": "paused"})
    proc = paused.start()
    mockserver.arm(slow, proc.pid, signal="TERM", at=50)
    assert paused.finish(proc).finish_reason == "shutdown"
    Crawl(workdir, "failing", args={"base": mockserver.url(ns)}, feed="failing.jsonl").run()
    killed_ns = mockserver.namespace()
    kill_after(Crawl(workdir, "graph", args={"start": mockserver.url(f"{killed_ns}/g/2000/5/0")},
                     feed="killed.jsonl", settings={"CHECKPOINT_STAGE": "killed"}),
               mockserver, killed_ns, 300)
    return workdir / "checkpoints"


def test_list_shows_every_stage(checkpoints, tmp_path):
    result = scrapy_checkpoint("list", "--dir", str(checkpoints), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, rule, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["stage", "status", "done", "pending", "failed"]
    assert {row.split()[0]: row.split()[1] for row in rows} == {
        "complete": "completed", "failing": "completed", "killed": "crashed", "paused": "paused"
    }
    data = json.loads(scrapy_checkpoint("list", "--dir", str(checkpoints), "--json",
                                        cwd=tmp_path).stdout)
    by_stage = {info["stage"]: info for info in data}
    assert (by_stage["complete"]["done"], by_stage["complete"]["percent_done"]) == (40, 100.0)
    assert by_stage["failing"]["failed"] == 4 and by_stage["failing"]["success_rate"] == 20.0
    assert by_stage["paused"]["pending"] > 0 and by_stage["killed"]["pending"] > 0


def test_list_and_show_tell_how_far_from_how_well(checkpoints, tmp_path):
    # the failing stage is completed, 4 of its 5 requests failed: all settled, 20% ok
    header, _, *rows = scrapy_checkpoint("list", "--dir", str(checkpoints),
                                         cwd=tmp_path).stdout.splitlines()
    assert header.split()[5:7] == ["settled", "ok"]
    failing = next(row.split() for row in rows if row.startswith("failing "))
    assert failing[1:7] == ["completed", "1", "0", "4", "100.0%", "20.0%"]
    shown = scrapy_checkpoint("show", "failing", "--dir", str(checkpoints), cwd=tmp_path).stdout
    assert "1 done, 0 pending, 4 failed, 0 dropped: 100.0% settled, ok 20.0%," in shown
    report = scrapy_checkpoint("report", "--dir", str(checkpoints), cwd=tmp_path).stdout
    assert "  failing: completed, 1 done, 0 pending, 4 failed: 100.0% settled, ok 20.0%\n" in (
        report
    )


def test_show_tells_everything_about_a_stage(checkpoints, tmp_path):
    result = scrapy_checkpoint("show", "failing", "--dir", str(checkpoints), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Stage failing (spider failing): completed" in result.stdout
    assert "recent failures:" in result.stdout and "ValueError: boom" in result.stdout
    # the command that made the stage: a runspider here
    assert f"resume: scrapy runspider {SPIDERS / 'failing.py'} -s CHECKPOINT_RESUME=1" in (
        result.stdout
    )
    assert "-s CHECKPOINT_RETRY_FAILED=1" in result.stdout
    info = json.loads(scrapy_checkpoint("show", "failing", "--dir", str(checkpoints), "--json",
                                        cwd=tmp_path).stdout)
    assert len(info["recent_failures"]) == 4
    assert [run["close_reason"] for run in info["runs"]] == ["finished"]
    assert info["config"]["arguments"]["base"].startswith("http://127.0.0.1:")
    assert info["counters"]["failed"] == 4
    paused = json.loads(scrapy_checkpoint("show", "paused", "--dir", str(checkpoints), "--json",
                                          cwd=tmp_path).stdout)
    assert paused["status"] == "paused" and paused["runs"][0]["close_reason"] == "shutdown"


def test_export_writes_the_ledger(checkpoints, tmp_path):
    out = tmp_path / "failed.csv"
    result = scrapy_checkpoint("export", "failing", "--status", "failed", "-o", str(out),
                               "--dir", str(checkpoints), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"failed"}
    assert all(r["error"] for r in rows)
    everything = scrapy_checkpoint("export", "--dir", str(checkpoints), cwd=tmp_path)
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    listed = json.loads(scrapy_checkpoint("list", "--dir", str(checkpoints), "--json",
                                          cwd=tmp_path).stdout)
    assert len(lines) == sum(info["total"] for info in listed)
    assert {line["stage"] for line in lines} == {"complete", "failing", "killed", "paused"}


def test_report_adds_up_the_stages(checkpoints, tmp_path):
    report = json.loads(scrapy_checkpoint("report", "--dir", str(checkpoints), "--json",
                                          cwd=tmp_path).stdout)
    listed = json.loads(scrapy_checkpoint("list", "--dir", str(checkpoints), "--json",
                                          cwd=tmp_path).stdout)
    assert report["stages"] == 4 and report["completed"] == 2
    assert report["done"] == sum(info["done"] for info in listed)
    text = scrapy_checkpoint("report", "--dir", str(checkpoints), cwd=tmp_path).stdout
    assert text.startswith("4 stages, 2 completed:")


def test_errors_are_clear_and_exit_non_zero(checkpoints, tmp_path):
    unknown = scrapy_checkpoint("show", "nope", "--dir", str(checkpoints), cwd=tmp_path)
    assert unknown.returncode == 1 and "Unknown stage 'nope'" in unknown.stderr
    assert "complete, failing, killed, paused" in unknown.stderr
    missing = scrapy_checkpoint("list", "--dir", str(tmp_path / "none"), cwd=tmp_path)
    assert missing.returncode == 1 and "the directory does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = scrapy_checkpoint("list", "--dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert empty.returncode == 1 and "No checkpoints in" in empty.stderr
    usage = scrapy_checkpoint("frobnicate", "--dir", str(checkpoints), cwd=tmp_path)
    assert usage.returncode == 2 and "name a subcommand" in usage.stderr
    cleanup = scrapy_checkpoint("cleanup", "--dir", str(checkpoints), cwd=tmp_path)
    assert cleanup.returncode == 2 and "--days" in cleanup.stderr


def test_reset_asks_keeps_a_backup_and_cleanup_spares_unfinished_stages(checkpoints, tmp_path):
    declined = scrapy_checkpoint("reset", "paused", "--dir", str(checkpoints), cwd=tmp_path,
                                 stdin="n\n")
    assert declined.returncode == 1 and "Nothing was reset" in declined.stderr
    assert (checkpoints / "paused.sqlite").exists()
    reset = scrapy_checkpoint("reset", "paused", "--force", "--json", "--dir", str(checkpoints),
                              cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    [done] = json.loads(reset.stdout)
    assert done["stage"] == "paused" and not (checkpoints / "paused.sqlite").exists()
    assert (checkpoints / done["backup"].rsplit("/", 1)[1]).exists()
    # its feed too, as CHECKPOINT_RESET does: the next crawl starts a new file
    feed = checkpoints.parent / "paused.jsonl"
    [(moved, backup)] = done["feeds"]
    assert moved == str(feed) and not feed.exists()
    assert backup.startswith(f"{feed}.bak-") and os.path.getsize(backup) > 0
    cleanup = json.loads(scrapy_checkpoint("cleanup", "--days", "0", "--json", "--dir",
                                           str(checkpoints), cwd=tmp_path).stdout)
    assert sorted(cleanup["removed"]) == ["complete", "failing"]
    assert cleanup["kept"] == ["killed"]
    assert sorted(p.name for p in checkpoints.glob("*.sqlite")) == ["killed.sqlite"]


def test_inside_a_project_the_directory_comes_from_its_settings(checkpoints, tmp_path):
    (tmp_path / "scrapy.cfg").write_text("[settings]\ndefault = cli_project_settings\n")
    (tmp_path / "cli_project_settings.py").write_text(f"CHECKPOINT_DIR = {str(checkpoints)!r}\n")
    result = scrapy_checkpoint("list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "killed" in {info["stage"] for info in json.loads(result.stdout)}


def test_show_and_cleanup_tell_a_crashed_run_from_a_live_one(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/2000/3/0")})
    kill_after(crawl, mockserver, ns, 300)
    directory = str(tmp_path / "checkpoints")
    # a big ledger, read by a reader that stops early
    piped = subprocess.run(
        f"{sys.executable} -m scrapy.cmdline checkpoint export --dir {directory} | head -1",
        shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert len(piped.stdout.splitlines()) == 1 and "Error" not in piped.stderr, piped.stderr
    live = crawl.start(CHECKPOINT_RESUME="1")
    mockserver.wait_for_hits(ns, 400)
    os.kill(live.pid, signal.SIGSTOP)  # crawling the stage now
    try:
        shown = scrapy_checkpoint("show", "graph", "--dir", directory, cwd=tmp_path).stdout
        assert "(crashed)" in shown and "(running)" in shown  # run 1 died, run 2 is live
        cleanup = scrapy_checkpoint("cleanup", "--days", "0", "--force", "--dir", directory,
                                    cwd=tmp_path).stdout
        assert f"Kept (being crawled now): graph (process {live.pid})" in cleanup
        assert "not completed" not in cleanup
    finally:
        os.kill(live.pid, signal.SIGCONT)
    assert crawl.finish(live).finish_reason == "finished"
    shown = scrapy_checkpoint("show", "graph", "--dir", directory, cwd=tmp_path).stdout
    assert "(crashed)" in shown and "(running)" not in shown and "finished" in shown


def test_report_gives_a_running_stage_its_rate_and_eta(tmp_path, mockserver):
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=150)
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/3000/3/0")})
    directory = str(tmp_path / "checkpoints")
    proc = crawl.start()
    try:
        line = ""
        deadline = time.monotonic() + 120  # two progress samples of the run: 5 s apart
        while "req/s" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, line
            time.sleep(0.5)
            report = scrapy_checkpoint("report", "--dir", directory, "--json", cwd=tmp_path)
            if report.returncode == 0:
                line = json.loads(report.stdout)["stage_lines"][0]
        assert re.fullmatch(r"graph: running, [\d,]+ done, [\d,]+ pending, 0 failed: "
                            r"[\d.]+% settled, ok 100\.0%, [\d.,]+ req/s, ETA \w+", line), line
    finally:
        proc.kill()
    assert crawl.finish(proc).returncode == -signal.SIGKILL
    report = scrapy_checkpoint("report", "--dir", directory, cwd=tmp_path).stdout
    assert "graph: crashed," in report and "ETA" not in report  # nobody crawls it now
    mockserver.configure(ns, delay_ms=0)
    assert crawl.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    # samples of both runs, the killed one's included, the last one at the close
    samples = crawl.open_store("graph").progress()
    assert {sample["run"] for sample in samples} == {1, 2}
    assert samples[-1]["pending"] == 0 and samples[-1]["done"] == 3000
    settled = [s["done"] + s["failed"] + s["dropped"] for s in samples]
    assert settled == sorted(settled) and len(samples) >= 3
