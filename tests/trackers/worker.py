"""A StageTracker-driven step, run by the tests as a real process.

Every key it starts processing is appended to --log (one line, written at
once), so a test can count how often each key was processed across kills.
Exits with 3 when the tracker refuses to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from scrapy_resume import CheckpointRefused, StageTracker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--stage", default="work")
    parser.add_argument("--log", required=True)
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--input", help="a file of keys, one a line (recorded as an input file)")
    parser.add_argument("--fail", help="a file of keys that fail")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--commit-every", type=int, default=16)
    parser.add_argument("--sync", action="store_true", help="a plain for loop, no asyncio")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--retry-failed", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.input:
        keys = Path(args.input).read_text().split()
    else:
        keys = [f"k{n}" for n in range(args.keys)]
    failing = set(Path(args.fail).read_text().split()) if args.fail else set()
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    delay = args.delay_ms / 1000

    def started(key: str) -> None:
        os.write(log, f"{key}\n".encode())

    async def process(key: str) -> dict:
        started(key)
        await asyncio.sleep(delay)
        if key in failing:
            raise RuntimeError(f"cannot process {key}")
        return {"length": len(key)}

    command = f"python worker.py --dir {args.dir}"
    tracker = StageTracker(
        args.stage,
        dir=args.dir,
        resume=args.resume,
        reset=args.reset,
        retry_failed=args.retry_failed,
        input_files=[args.input] if args.input else [],
        config={"keys": args.keys},
        commit_interval=0.05,
        commit_every=args.commit_every,
        resume_command=f"{command} --resume",
        reset_command=f"{command} --reset",
        retry_command=f"{command} --resume --retry-failed",
    )
    try:
        if args.sync:
            with tracker:
                for key in tracker.pending(keys):
                    started(key)
                    time.sleep(delay)
                    tracker.done(key)
        else:
            async def run() -> None:
                async with tracker:
                    await tracker.map(process, keys, concurrency=args.concurrency)

            asyncio.run(run())
    except CheckpointRefused as refused:
        print(f"REFUSED {refused.reason}: {refused}", file=sys.stderr)
        sys.exit(3)
    print(f"STOPPED {tracker.stopping} ABANDONED {tracker.abandoning}", flush=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    main()
