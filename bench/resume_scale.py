"""Resuming a huge checkpoint: time to the first request, peak memory, disk per request.

    python bench/resume_scale.py [--done 1000000] [--pending 100000]

Builds a stage synthetically through the store's own API (``--done`` done
requests, ``--pending`` pending ones that point at a local site), then runs
``scrapy runspider`` with CHECKPOINT_RESUME=1 and reports, for that process:
the time from its start to the first request reaching the downloader, its
peak RSS, and the stage file's size per done request beyond its URL.
The targets (issue 7): under 3 s, under 400 MB, at most 64 bytes + URL.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from hashlib import sha1
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scrapy import Request  # noqa: E402

from scrapy_resume import CheckpointStore, RequestStatus  # noqa: E402
from scrapy_resume.store.records import CommitBatch, NewRequest, Settlement, StageStatus

SPIDER = '''
import json, time
import scrapy
from scrapy import signals
from scrapy.utils.defer import deferred_from_coro


class ScaleSpider(scrapy.Spider):
    name = "scale"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.first_request, signals.request_reached_downloader)
        return spider

    async def start(self):
        return
        yield

    def first_request(self, request, spider):
        if not getattr(self, "seen", False):
            self.seen = True
            with open(self.report, "w") as f:
                json.dump({"first_request_at": time.time()}, f)
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="measured"))

    def parse(self, response):
        pass
'''

BATCH = 50_000


def build(path: Path, done: int, pending: int, site: str) -> float:
    """Write the stage through CheckpointStore; return the mean URL length of done rows."""
    store = CheckpointStore(path)
    store.initialize("scale", "scale")
    url_bytes = 0
    for start in range(0, done, BATCH):
        settlements = []
        for n in range(start, min(done, start + BATCH)):
            url = f"{site}/done/{n}"
            url_bytes += len(url)
            key = sha1(url.encode()).digest()
            settlements.append(Settlement(key, RequestStatus.DONE, url, http_status=200))
        store.commit(CommitBatch(settlements=settlements))
    for start in range(0, pending, BATCH):
        new = []
        for n in range(start, min(pending, start + BATCH)):
            url = f"{site}/pending/{n}"
            blob = pickle.dumps(Request(url).to_dict(), protocol=pickle.HIGHEST_PROTOCOL)
            new.append(NewRequest(sha1(url.encode()).digest(), url, blob))
        store.commit(CommitBatch(new_requests=new))
    store.begin_run("fresh")
    store.set_status(StageStatus.PAUSED)
    store.close()
    return url_bytes / done if done else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--done", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    args = parser.parse_args()

    site = subprocess.Popen([sys.executable, str(REPO / "tests" / "mockserver.py")],
                            stdout=subprocess.PIPE, text=True)
    base = site.stdout.readline().strip() + "/scale"
    tmp = Path(tempfile.mkdtemp(prefix="scrapy-resume-scale-"))
    try:
        path = tmp / "checkpoints" / "scale.sqlite"
        started = time.monotonic()
        build(path, args.done, args.pending, base)
        print(f"built {args.done:,} done + {args.pending:,} pending in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        # the disk figure: a stage of done requests only, checkpointed into its main file
        done_only = tmp / "done-only" / "scale.sqlite"
        mean_url = build(done_only, args.done, 0, base)
        with sqlite3.connect(done_only) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = done_only.stat().st_size
        spider = tmp / "scale_spider.py"
        spider.write_text(SPIDER)
        report = tmp / "report.json"
        cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider", str(spider),
               "-a", f"report={report}", "-s", f"CHECKPOINT_DIR={path.parent}",
               "-s", "CHECKPOINT_RESUME=1", "-s", "LOG_LEVEL=WARNING",
               "-s", "TELNETCONSOLE_ENABLED=0",
               "-s", "ADDONS=" + json.dumps({"scrapy_resume.Addon": 0})]
        launched = time.time()
        proc = subprocess.run(cmd, cwd=tmp, env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, text=True, timeout=600)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if not report.exists():
            raise SystemExit(f"no request was sent:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        first = json.loads(report.read_text())["first_request_at"] - launched
    finally:
        site.terminate()

    index_mb, set_mb = finished_index_memory(path)
    per_done = size / args.done if args.done else 0.0
    print(f"resume of {args.done:,} done + {args.pending:,} pending:")
    print(f"  process start to first request: {first:.2f}s (target < 3 s)")
    print(f"  peak RSS of the crawl process:  {peak_mb:.0f} MB (target < 400 MB)")
    print(f"  stage file: {size / 1e6:.1f} MB, {per_done:.1f} B per done request, "
          f"{per_done - mean_url:.1f} B beyond its {mean_url:.0f}-byte URL (target <= 64)")
    print(f"  finished-key index: {index_mb:.1f} MB (a Python set of the same keys: "
          f"{set_mb:.1f} MB)")
    print(f"SUMMARY done={args.done} pending={args.pending}: first request {first:.2f}s, "
          f"peak RSS {peak_mb:.0f} MB, {per_done - mean_url:.1f} B per done request beyond "
          f"its URL, finished-key index {index_mb:.1f} MB vs set {set_mb:.1f} MB")


def finished_index_memory(path: Path) -> tuple[float, float]:
    """MB held by the resume's finished-key index, and by a set of the same keys."""
    store = CheckpointStore(path)
    tracemalloc.start()
    index = store.finished_index()
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    with sqlite3.connect(path) as db:
        keys = [bytes(key) for (key,) in db.execute("SELECT key FROM requests WHERE status != 0")]
    tracemalloc.start()
    as_set = set(keys)
    set_bytes = tracemalloc.get_traced_memory()[0] + sum(sys.getsizeof(k) for k in keys)
    tracemalloc.stop()
    assert len(index) == len(as_set)
    store.close()
    return index_bytes / 1e6, set_bytes / 1e6


if __name__ == "__main__":
    main()
