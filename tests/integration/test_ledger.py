"""The request ledger: failures with reasons, retry-failed, stages, validation, locking,
corruption, write errors and the security of checkpoint files."""

from __future__ import annotations

import os
import pickle
import resource
import signal
import sqlite3
import stat
import subprocess

from scrapy_resume import CheckpointStore
from tests.crawling import Crawl, graph_crawl, kill_after, was_killed


def ledger_rows(crawl: Crawl, stage: str) -> dict[str, dict]:
    store = CheckpointStore(crawl.store_path(stage))
    try:
        return {row["url"]: row for row in store.ledger_rows()}
    finally:
        store.close()


def test_failures_are_recorded_with_reasons_and_retry_failed_refetches_exactly_them(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "failing", args={"base": base})
    first = crawl.run()
    assert first.finish_reason == "finished"
    rows = ledger_rows(crawl, "failing")
    assert {url: row["status"] for url, row in rows.items()} == {
        f"{base}/flaky/4/x": "failed",
        f"{base}/status/500": "failed",
        f"{base}/status/200?boom=1": "failed",
        f"{base}/slow/10/ok": "done",
        "http://127.0.0.1:1/refused": "failed",
    }
    assert rows[f"{base}/status/500"]["http_status"] == 500
    assert rows[f"{base}/status/500"]["error"].startswith("HttpError")
    assert rows[f"{base}/status/500"]["attempts"] == 3  # RetryMiddleware: 1 + 2 retries
    assert rows[f"{base}/status/200?boom=1"]["error"] == "ValueError: boom"
    assert rows["http://127.0.0.1:1/refused"]["error"].startswith("DownloadConnectionRefusedError")
    assert rows["http://127.0.0.1:1/refused"]["attempts"] == 3

    # without the flag, a completed stage has nothing to do, failures stay failed
    before = mockserver.hits(ns)
    again = crawl.run(CHECKPOINT_RESUME="1")
    assert "nothing to do" in again.log
    assert mockserver.hits(ns) == before

    retried = crawl.run(CHECKPOINT_RESUME="1", CHECKPOINT_RETRY_FAILED="1")
    assert "1 done, 4 failed, 0 pending (retrying failed: yes)" in retried.log
    assert retried.finish_reason == "finished"
    after = mockserver.hits(ns)
    refetched = {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p, 0)}
    # exactly the failed set, each with its retries; the done page is not fetched
    assert refetched == {
        f"/{ns}/flaky/4/x": 2,  # hit 4 still fails, hit 5 answers 200 at last
        f"/{ns}/status/500": 3,
        f"/{ns}/status/200?boom=1": 1,
    }
    rows = ledger_rows(crawl, "failing")
    assert rows[f"{base}/flaky/4/x"]["status"] == "done"
    assert rows[f"{base}/flaky/4/x"]["attempts"] == 5
    assert rows["http://127.0.0.1:1/refused"]["attempts"] == 6
    assert crawl.summary("failing").failed == 3


def test_a_crawlspider_failure_is_failed_unless_its_rule_has_an_errback(tmp_path, mockserver):
    # CrawlSpider gives every request of its rules an errback of its own, which only
    # forwards the failure to the rule's errback, if the rule has one
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "rules", args={"base": base})
    assert crawl.run().finish_reason == "finished"
    rows = ledger_rows(crawl, "rules")
    assert {url.replace(base, ""): row["status"] for url, row in rows.items()
            if "/links?" not in url} == {
        "/status/404": "failed",
        "/status/500": "failed",
        "http://127.0.0.1:1/refused": "failed",
        "/slow/10/ok": "done",
        "/status/503": "done",  # its rule's errback handled it (and yielded an item)
    }
    assert rows[f"{base}/status/404"]["error"] == "HttpError: Ignoring non-200 response (404)"
    assert rows[f"{base}/status/500"]["attempts"] == 3
    assert crawl.summary("rules").failed == 3
    before = mockserver.hits(ns)
    retried = crawl.run(CHECKPOINT_RESUME="1", CHECKPOINT_RETRY_FAILED="1")
    assert "nothing to do" not in retried.log
    after = mockserver.hits(ns)
    assert {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p, 0)} == {
        f"/{ns}/status/404": 1, f"/{ns}/status/500": 3,
    }
    assert sorted((item["kind"], item["url"]) for item in crawl.items()) == [
        ("handled", f"{base}/status/503"), ("page", f"{base}/slow/10/ok"),
    ]


def graph(tmp_path, mockserver, ns, size=2000, **kwargs) -> Crawl:
    return graph_crawl(tmp_path, mockserver, ns, size, **kwargs)


def test_two_stages_resume_and_reset_independently(tmp_path, mockserver):
    ns_a, ns_b = mockserver.namespace(), mockserver.namespace()
    stage_a = graph(tmp_path, mockserver, ns_a, settings={"CHECKPOINT_STAGE": "a"}, feed="a.jsonl")
    stage_b = graph(tmp_path, mockserver, ns_b, size=300, settings={"CHECKPOINT_STAGE": "b"},
                    feed="b.jsonl")
    kill_after(stage_a, mockserver, ns_a, 500)
    assert stage_b.run().finish_reason == "finished"
    assert stage_a.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    assert (stage_a.summary("a").done, stage_b.summary("b").done) == (2000, 300)
    assert stage_b.run(CHECKPOINT_RESET="1").finish_reason == "finished"
    assert stage_a.summary("a").counters["runs"] == 2  # untouched by b's reset
    assert stage_b.summary("b").counters["runs"] == 1


def test_a_changed_spider_argument_is_refused_by_name(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns)
    kill_after(crawl, mockserver, ns, 300)
    crawl.args["start_items"] = "3"
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_config_changed"
    assert "spider argument start_items: 0 then, 3 now" in refused.log
    assert "CHECKPOINT_RESET=1" in refused.log
    del crawl.args["start_items"]
    assert crawl.run(CHECKPOINT_RESUME="1", DEPTH_LIMIT="2").finish_reason == (
        "checkpoint_config_changed"
    )
    assert crawl.run(CHECKPOINT_RESUME="1").finish_reason == "finished"


def test_a_changed_input_file_is_refused_by_name(tmp_path, mockserver):
    ns = mockserver.namespace()
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(mockserver.url(f"{ns}/slow/5/{i}") + "\n" for i in range(200)))
    crawl = Crawl(tmp_path, "urls", args={"input": str(urls)},
                  settings={"CHECKPOINT_INPUT_FILES": str(urls)})
    kill_after(crawl, mockserver, ns, 50)
    urls.write_text(urls.read_text() + mockserver.url(f"{ns}/slow/5/extra") + "\n")
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_config_changed"
    assert f"input file {urls}: its content changed" in refused.log
    urls.unlink()
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert f"input file {urls}: missing now" in refused.log


def test_a_second_process_is_refused_and_a_killed_one_never_blocks(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns, size=300)
    first = crawl.start()
    mockserver.wait_for_hits(ns, 1)  # it has the stage open
    os.kill(first.pid, signal.SIGSTOP)  # and keeps it, however slow the machine
    second = graph(tmp_path, mockserver, ns, size=300).run(CHECKPOINT_RESUME="1")
    assert second.finish_reason == "checkpoint_locked"
    assert f"(pid {first.pid})" in second.log
    os.kill(first.pid, signal.SIGKILL)
    assert was_killed(crawl.finish(first))
    resumed = crawl.run(CHECKPOINT_RESUME="1")  # the dead process's lock is gone
    assert resumed.finish_reason == "finished"


def test_a_truncated_checkpoint_is_refused_and_kept(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns, size=1000)
    assert crawl.run().finish_reason == "finished"
    path = crawl.store_path("graph")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_corrupt"
    assert path.read_bytes() == data[: len(data) // 2]


def limit_file_size(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_write_error_stops_the_crawl_cleanly_and_it_resumes(tmp_path, mockserver, monkeypatch):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns, settings={"LOG_FILE": str(tmp_path / "log.txt")})
    # every file the crawl writes may grow to 1.5 MB: the checkpoint's WAL gets there first,
    # like a disk that fills up
    original = subprocess.Popen

    def limited_popen(*args, **kwargs):
        return original(*args, preexec_fn=limit_file_size(1_500_000), **kwargs)

    monkeypatch.setattr(subprocess, "Popen", limited_popen)
    crawl.run()
    monkeypatch.setattr(subprocess, "Popen", original)
    log = (tmp_path / "log.txt").read_text()
    assert "Spider closed (checkpoint_write_error)" in log
    assert "Checkpoint commit failed" in log
    done_before = crawl.summary("graph").done
    assert 0 < done_before < 2000
    resumed = crawl.run(CHECKPOINT_RESUME="1", LOG_FILE=str(tmp_path / "log2.txt"))
    log2 = (tmp_path / "log2.txt").read_text()
    assert "Spider closed (finished)" in log2, resumed.log[-2000:]
    urls = sorted(item["url"] for item in crawl.items())
    assert urls == sorted(mockserver.url(f"{ns}/g/2000/5/{n}") for n in range(2000))


def test_checkpoint_files_are_private(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns)
    kill_after(crawl, mockserver, ns, 300)  # the WAL and lock files stay
    directory = tmp_path / "checkpoints"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == ["checkpoint.secret", "graph.sqlite", "graph.sqlite-shm",
                     "graph.sqlite-wal", "graph.sqlite.lock"]
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


class CreatesAFile:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_forged_stored_request_is_refused_and_never_loaded(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns)
    kill_after(crawl, mockserver, ns, 300)
    evidence = tmp_path / "pwned"
    evil = pickle.dumps(CreatesAFile(str(evidence)))
    with sqlite3.connect(crawl.store_path("graph")) as db:
        (count,) = db.execute("SELECT count(*) FROM requests WHERE status = 0").fetchone()
        assert count > 0
        db.execute("UPDATE frontier SET request = ?", (b"\0" * 32 + evil,))
    before = mockserver.hits(ns)
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_tampered"
    assert "Never resume a checkpoint from an untrusted source" in refused.log
    assert not evidence.exists()
    assert mockserver.hits(ns) == before


def test_resuming_an_old_checkpoint_warns(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph(tmp_path, mockserver, ns, size=600)
    kill_after(crawl, mockserver, ns, 100)
    result = crawl.run(CHECKPOINT_RESUME="1", CHECKPOINT_STALE_DAYS="0.000001")
    assert "was last updated" in result.log and "CHECKPOINT_STALE_DAYS" in result.log
    assert result.finish_reason == "finished"
    assert os.path.exists(crawl.store_path("graph"))
