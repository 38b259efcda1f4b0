"""Stage 3: enrichment, a plain asyncio step (no Scrapy), checkpointed with StageTracker.

    python enrich.py --site URL [--input output/validated.jsonl] [--resume | --reset]

For every product the validation stage found alive (HTTP 200), it asks the
shop's JSON API for the price, 16 requests at a time, and records the answer
in the stage's ledger: ``tracker.done(url, price=..., stock=...)``. When the
stage completes, the result file is written from the ledger, so the answer
and "done" are saved together and an interruption can neither lose nor
duplicate a line. The stage sits beside discovery and validation in
output/checkpoints, so ``scrapy checkpoint list`` shows all three.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from scrapy_resume import CheckpointRefused, CheckpointStore, RequestStatus, StageTracker

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "output" / "checkpoints"


async def get_json(url: str) -> dict:
    """A minimal HTTP/1.0 GET with asyncio streams: the standard library is enough here."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"GET {parts.path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"HTTP {status} from {url}")
    return json.loads(body)


def alive_products(validated: Path) -> list[str]:
    with validated.open() as lines:
        return [item["url"] for item in map(json.loads, lines) if item["status"] == 200]


def write_results(stage: str, output: Path) -> int:
    """The enriched products, from the ledger, written atomically."""
    store = CheckpointStore(CHECKPOINTS / f"{stage}.sqlite")
    partial = output.with_suffix(".partial")
    count = 0
    try:
        with partial.open("w") as out:
            for row in store.ledger_rows(RequestStatus.DONE):
                out.write(json.dumps({"url": row["url"], **row["info"]}) + "\n")
                count += 1
    finally:
        store.close()
    os.replace(partial, output)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True)
    parser.add_argument("--input", default=str(HERE / "output" / "validated.jsonl"))
    parser.add_argument("--output", default=str(HERE / "output" / "enriched.jsonl"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--retry-failed", action="store_true")
    args = parser.parse_args()

    async def enrich(url: str) -> dict:
        product = url.rsplit("/", 1)[1]
        answer = await get_json(f"{args.site}/api/price/{product}")
        return {"price": answer["price"], "stock": answer["stock"]}  # kept in the ledger

    command = "python enrich.py --site URL"
    tracker = StageTracker(
        "enrichment",
        dir=CHECKPOINTS,
        resume=args.resume,
        reset=args.reset,
        retry_failed=args.retry_failed,
        input_files=[args.input],  # a changed validation output refuses the resume
        resume_command=f"{command} --resume",
        reset_command=f"{command} --reset",
        retry_command=f"{command} --resume --retry-failed",
    )

    async def run() -> None:
        async with tracker:
            await tracker.map(enrich, alive_products(Path(args.input)),
                              concurrency=args.concurrency)

    try:
        asyncio.run(run())
    except CheckpointRefused as refused:
        sys.exit(f"enrich.py: {refused}")
    if tracker.completed:
        count = write_results("enrichment", Path(args.output))
        print(f"enrichment completed: {count} products written to {args.output}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s: "
                        "%(message)s")
    main()
