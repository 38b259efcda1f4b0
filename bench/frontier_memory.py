"""How much memory does a big frontier take? Plain Scrapy, JOBDIR and scrapy-resume, same run.

    python bench/frontier_memory.py [--pages 1500] [--fanout 200] [--modes plain,jobdir,resume]

Crawls the mock server's wide site (tests/mockserver.py ``/wideh``: every page
links to ``--fanout`` new pages, ids of a fixed length: with page numbers, a
depth-first crawl's URLs would lengthen by 2.3 digits a level, 1,300 characters
at 15,000 pages, and measure that, not the frontier) until ``--pages`` pages are fetched
(CLOSESPIDER_PAGECOUNT), with ``-o items.jsonl``, so that about
``pages * fanout`` requests are enqueued and most of them are still pending
at the end. Prints, for each mode, the peak RSS of the crawl process (from
``wait4``), the requests enqueued and pending, the RSS per pending request,
and the ratio against JOBDIR (Scrapy's disk queues, which are not crash-safe).
``--growth-pages 15000`` adds the 3,000,000-pending run of ``--growth-modes``
(resume only, by default: about 25 minutes a mode) and the growth per pending
request between the two; ``--start-urls 1000000`` adds, in each mode, a site
without links whose start() yields a million requests. ``--frontier-memory N``
sets CHECKPOINT_FRONTIER_MEMORY for the resume mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPIDER = REPO / "tests" / "spiders" / "graph.py"
MODES = {
    "plain": {},
    "jobdir": {"JOBDIR": "{workdir}/job"},
    "resume": {"ADDONS": json.dumps({"scrapy_resume.Addon": 0}),
               "CHECKPOINT_DIR": "{workdir}/checkpoints"},
}


def crawl(start: str, pages: int, mode: str, workdir: Path, more_starts: int = 0) -> dict:
    stats = workdir / "stats.json"
    settings = {"LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": "0",
                "CLOSESPIDER_PAGECOUNT": str(pages),
                **{name: value.replace("{workdir}", str(workdir))
                   for name, value in MODES[mode].items()}}
    cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider", str(SPIDER),
           "-a", f"start={start}", "-a", f"stats_file={stats}", "-a", f"more_starts={more_starts}",
           "-o", str(workdir / "items.jsonl")]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"the {mode} crawl failed (status {status})")
    found = json.loads(stats.read_text())
    enqueued = found.get("scheduler/enqueued", 0)
    return {
        "peak_rss_mb": usage.ru_maxrss / 1024,  # (kilobytes on Linux)
        "enqueued": enqueued,
        "pending": enqueued - found.get("scheduler/dequeued", 0),
        "fetched": found.get("response_received_count", 0),
        "seconds": time.monotonic() - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--fanout", type=int, default=200)
    parser.add_argument("--modes", default="plain,jobdir,resume")
    parser.add_argument("--growth-pages", type=int, default=None,
                        help="also crawl this many pages in --growth-modes, and print how "
                             "much the peak RSS grew per pending request (15000: 3,000,000)")
    parser.add_argument("--growth-modes", default="resume")
    parser.add_argument("--start-urls", type=int, default=None,
                        help="also crawl, in --modes, a site with no links whose start() "
                             "yields this many requests (a huge start(): 1000000)")
    parser.add_argument("--frontier-memory", type=int, default=None,
                        help="CHECKPOINT_FRONTIER_MEMORY of the resume mode (default: its own)")
    options = parser.parse_args()
    if options.frontier_memory is not None:
        MODES["resume"]["CHECKPOINT_FRONTIER_MEMORY"] = str(options.frontier_memory)
    # (label, mode, pages, fanout, more start requests)
    runs = [(f"{mode}@{options.pages}", mode, options.pages, options.fanout, 0)
            for mode in options.modes.split(",")]
    if options.growth_pages:
        runs += [(f"{mode}@{options.growth_pages}", mode, options.growth_pages, options.fanout, 0)
                 for mode in options.growth_modes.split(",")]
    if options.start_urls:
        runs += [(f"{mode}@start()", mode, options.pages, 0, options.start_urls)
                 for mode in options.modes.split(",")]
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "mockserver.py")],
                              stdout=subprocess.PIPE, text=True)
    results = {}
    try:
        base = server.stdout.readline().strip()
        for number, (label, mode, pages, fanout, more_starts) in enumerate(runs):
            start = f"{base}/mem{number}/wideh/{fanout}/0"
            with tempfile.TemporaryDirectory() as workdir:
                results[label] = crawl(start, pages, mode, Path(workdir), more_starts)
    finally:
        server.terminate()
        server.wait(10)
    print(f"\nwide site: {options.fanout} new links a page")
    for run, r in results.items():
        per_request = r["peak_rss_mb"] * 2**20 / max(r["pending"], 1)
        # against the same crawl's JOBDIR run, if measured
        same = results.get(f"jobdir@{run.split('@')[1]}", {}).get("peak_rss_mb")
        ratio = f"{r['peak_rss_mb'] / same:5.2f}x JOBDIR" if same else ""
        print(f"  {run:13} peak RSS {r['peak_rss_mb']:7.0f} MB  {r['enqueued']:>9,} enqueued  "
              f"{r['pending']:>9,} pending  {per_request:6.0f} B/pending  {r['seconds']:6.0f} s"
              f"  {ratio}")
    for mode in options.growth_modes.split(",") if options.growth_pages else ():
        small = results.get(f"{mode}@{options.pages}")
        large = results[f"{mode}@{options.growth_pages}"]
        if small:
            growth = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / (
                large["pending"] - small["pending"])
            results[f"{mode} growth B/pending"] = round(growth, 1)
            print(f"  {mode}: {growth:.1f} B more per pending request, "
                  f"{small['pending']:,} -> {large['pending']:,} pending")
    print("SUMMARY " + json.dumps(results))


if __name__ == "__main__":
    main()
