"""What do leases and the Redis backend cost a scrapy-redis crawl? Same run, same site.

    python bench/redis_workers.py [--pages 3000] [--rounds 3] [--workers 1,2]

Crawls a local site (tests/mockserver.py on 127.0.0.1) with N worker
processes sharing one scrapy-redis queue on a redis-server the bench starts
(127.0.0.1, a free port, append-only file on), in alternating rounds of plain
scrapy-redis and scrapy-redis with scrapy-resume (the add-on, the Redis
backend, leased pops). Throughput is pages per second from the first worker's
start to the last worker's exit; the ratio is checkpointed over plain, per
round, and the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bench.overhead import start_site  # noqa: E402
from tests.crawling import ENABLING  # noqa: E402
from tests.redisserver import RedisServer  # noqa: E402


def worker_command(variant: str, start: str, redis_url: str, workdir: Path) -> list[str]:
    settings = {
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": "0",
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "SCHEDULER_PERSIST": "True",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "REDIS_URL": redis_url,
        **ENABLING["addon" if variant == "checkpoint" else "off"],
    }
    if variant == "checkpoint":
        settings["CHECKPOINT_BACKEND"] = redis_url
        settings["CHECKPOINT_DIR"] = str(workdir.parent / "checkpoints")
    cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider",
           str(REPO / "tests/spiders/graph.py"), "-a", f"start={start}",
           "-a", "stats_file=stats.json", "-o", "items.jsonl"]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    return cmd


def crawl(variant: str, workers: int, start: str, redis_url: str, workdir: Path,
          pages: int) -> tuple[float, bool]:
    """Pages per second of ``workers`` processes crawling the site together, and
    whether a worker quit early (it fetched less than a tenth of its share)."""
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dirs = [workdir / f"worker{i}" for i in range(workers)]
    started = time.monotonic()
    procs = []
    for directory in dirs:
        directory.mkdir(parents=True)
        procs.append(subprocess.Popen(
            worker_command(variant, start, redis_url, directory), cwd=directory, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    for proc in procs:
        if proc.wait(600) != 0:
            raise SystemExit(f"{variant}: a worker exited with {proc.returncode}")
    wall = time.monotonic() - started
    urls = set()
    fetched = []
    for directory in dirs:
        with (directory / "items.jsonl").open() as feed:
            mine = [json.loads(line)["url"] for line in feed]
        urls.update(mine)
        fetched.append(len(mine))
    if len(urls) < pages:
        raise SystemExit(f"{variant}, {workers} workers: only {len(urls)} of {pages} pages")
    quit_early = workers > 1 and min(fetched) < pages / workers / 10
    return pages / wall, quit_early


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="scrapy-resume-redis-bench-"))
    site, base = start_site()
    server = None
    throughput: dict[tuple[str, int], list[float]] = {}
    quit_early: dict[tuple[str, int], list[bool]] = {}
    try:
        server = RedisServer(tmp / "redis")
        for round_ in range(args.rounds):
            order = ["plain", "checkpoint"] if round_ % 2 == 0 else ["checkpoint", "plain"]
            for workers in counts:
                for variant in order:
                    start = f"{base}/{variant}{workers}r{round_}/g/{args.pages}/5/0"
                    rate, early = crawl(variant, workers, start, server.url(),
                                        tmp / f"{variant}-{workers}-{round_}", args.pages)
                    throughput.setdefault((variant, workers), []).append(rate)
                    quit_early.setdefault((variant, workers), []).append(early)
                    print(f"round {round_ + 1} {workers} worker(s) {variant:>10}: "
                          f"{rate:.0f} pages/s{' (a worker quit early)' if early else ''}",
                          flush=True)
    finally:
        if server is not None:
            server.stop()
        site.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.pages} pages, 5 links per page, -o items.jsonl per worker, "
          f"{args.rounds} rounds, scrapy-redis with SCHEDULER_PERSIST")
    summary = []
    for workers in counts:
        plain, checkpoint = throughput[("plain", workers)], throughput[("checkpoint", workers)]
        ratios = [c / p for c, p in zip(checkpoint, plain)]
        ratio = statistics.median(ratios)
        print(f"{workers} worker(s): plain scrapy-redis {statistics.median(plain):.0f} pages/s, "
              f"with scrapy-resume {statistics.median(checkpoint):.0f} pages/s: median ratio "
              f"{ratio:.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f})")
        line = f"{workers} worker(s) {ratio:.3f}"
        if workers > 1:
            # a plain worker of a scrapy.Spider closes when it finds the queue empty (at
            # the start, before the first page's links are in): the rounds apart
            early = quit_early[("plain", workers)]
            stayed = [r for r, e in zip(ratios, early) if not e]
            print(f"  a plain worker quit early in {sum(early)} of {len(early)} rounds"
                  + (f"; rounds where none did: median ratio {statistics.median(stayed):.3f}"
                     if stayed else ""))
            line += f" (plain quit early in {sum(early)}/{len(early)}" + (
                f"; {statistics.median(stayed):.3f} where none did)" if stayed else ")")
        summary.append(line)
    print(f"SUMMARY pages={args.pages} rounds={args.rounds}: throughput with scrapy-resume / "
          f"plain scrapy-redis: {', '.join(summary)}")


if __name__ == "__main__":
    main()
