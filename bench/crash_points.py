"""Every crash point, not a sample: the full sweep behind tests/integration/test_crash_points.py.

For each phase of a stage's life (a fresh crawl: creation, commits, close; a
RESET run; ``scrapy checkpoint reset``), each system call the checkpoint makes
(tests/faults.py: pwrite64, fdatasync, fsync, rename, link, unlink, ftruncate)
and each N from 1 to the number of such calls the phase makes, one run is
killed (SIGKILL), or given ENOSPC from that call on, at its N-th call; then the
user's next steps run, and the feed must hold every item exactly once.

    python bench/crash_points.py                      # every point (about an hour)
    python bench/crash_points.py --phases reset --actions kill --every 3
    python bench/crash_points.py --feed json --every 2      # a JSON array; or batched-json

Prints one line per failing point, and a count per phase and syscall.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import MockServer  # noqa: E402
from tests.faults import FEEDS, STRACE, SYSCALLS, Point, Scenario  # noqa: E402

ACTIONS = {"kill": "signal=SIGKILL", "enospc": "error=ENOSPC"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", nargs="+", default=["fresh", "reset", "command"])
    parser.add_argument("--actions", nargs="+", choices=list(ACTIONS), default=list(ACTIONS))
    parser.add_argument("--syscalls", nargs="+", default=list(SYSCALLS))
    parser.add_argument("--every", type=int, default=1, help="only every K-th point")
    parser.add_argument("--jobs", type=int, default=2, help="points run at once")
    parser.add_argument("--feed", choices=list(FEEDS), default="jsonl",
                        help="the feed the crawl writes (a JSON array, JSON batches of 20)")
    args = parser.parse_args()
    if STRACE is None:
        print("strace is needed: apt-get install strace", file=sys.stderr)
        return 2
    server = MockServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scenario = Scenario(Path(tmp), server, server.namespace(), args.feed)
            points = []
            for phase in args.phases:
                counts = scenario.reference_counts(phase)
                print(f"{phase}: {dict(sorted(counts.items()))}", flush=True)
                for syscall in args.syscalls:
                    for when in range(1, counts[syscall] + 1, args.every):
                        points.extend(Point(phase, syscall, when, ACTIONS[action])
                                      for action in args.actions)
            print(f"{len(points)} points", flush=True)
            tried: Counter = Counter()
            failed: Counter = Counter()

            def check(point: Point) -> None:
                key = (point.phase, point.syscall, point.action)
                tried[key] += 1
                try:
                    scenario.check(point)
                except Exception:  # noqa: BLE001 - every failure is reported, none stops the sweep
                    failed[key] += 1
                    reason = traceback.format_exc(limit=1).strip().splitlines()[-1]
                    print(f"FAIL {point.label}: {reason[:300]}", flush=True)

            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(check, points))
    finally:
        server.stop()
    print(f"\n{'phase':8} {'syscall':10} {'fault':14} {'points':>6} {'failed':>6}")
    for key in sorted(tried):
        phase, syscall, action = key
        print(f"{phase:8} {syscall:10} {action:14} {tried[key]:6} {failed[key]:6}")
    total, bad = sum(tried.values()), sum(failed.values())
    print(f"\n{total} points, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
