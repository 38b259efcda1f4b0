"""The main job: discovery -> validation -> enrichment against the local demo shop,
each stage interrupted and resumed.

    python example_project/run_demo.py

1. serves the demo shop on 127.0.0.1 (a free port);
2. runs the discovery stage and kills it with SIGKILL half-way, like an OOM
   kill or a power cut would, then resumes it with CHECKPOINT_RESUME=1;
3. runs the validation stage over discovery's output, stops it with SIGTERM
   (a graceful Ctrl+C), then resumes it;
4. runs the enrichment stage (plain asyncio with a StageTracker, no Scrapy)
   over validation's output, kills it with SIGKILL, then resumes it;
5. runs the orders stage, a crawl behind a login: kills it with SIGKILL,
   restarts the shop's sessions (a server restarted while the crawl was
   down), then resumes it: it logs in again before the restored requests go;
6. prints what each stage's checkpoint holds and checks the result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
sys.path.insert(0, str(HERE))

from demo.site import (
    CATEGORIES,
    ORDER_PAGES,
    PAGES,
    PER_PAGE,
    order_total,
    product_price,
    product_status,
)

from scrapy_resume import CheckpointStore


def scrapy_crawl(spider: str, *args: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scrapy.cmdline", "crawl", spider, *args]
    print(f"$ scrapy crawl {spider} {' '.join(args)}", flush=True)
    return subprocess.Popen(cmd, cwd=HERE, stdout=log.open("w"), stderr=subprocess.STDOUT)


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def interrupt_when(proc: subprocess.Popen, feed: Path, count: int, sig: int) -> None:
    """Send ``sig`` once the feed holds ``count`` lines (polled, this is a demo)."""
    while proc.poll() is None and len(lines(feed)) < count:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(120)


def finish_reason(log: Path) -> str:
    found = [line for line in log.read_text().splitlines() if "Spider closed (" in line]
    return found[-1].split("Spider closed (")[1].rstrip(")") if found else "none (killed)"


def stage_summary(stage: str) -> str:
    store = CheckpointStore(OUTPUT / "checkpoints" / f"{stage}.sqlite")
    try:
        return store.summary().describe()
    finally:
        store.close()


def enrichment_done() -> int:
    path = OUTPUT / "checkpoints" / "enrichment.sqlite"
    if not path.exists():
        return 0
    store = CheckpointStore(path)
    try:
        return store.summary().done
    finally:
        store.close()


def run_enrichment(url: str, at: int) -> None:
    cmd = [sys.executable, "enrich.py", "--site", url]
    print(f"$ python enrich.py --site {url}", flush=True)
    first_log = OUTPUT / "enrichment-1.log"
    first = subprocess.Popen(cmd, cwd=HERE, stdout=first_log.open("w"), stderr=subprocess.STDOUT)
    while first.poll() is None and enrichment_done() < at:
        time.sleep(0.02)
    if first.poll() is None:
        first.send_signal(signal.SIGKILL)
    first.wait(60)
    print(f"  interrupted with SIGKILL; checkpoint: {stage_summary('enrichment')}")
    print(f"$ python enrich.py --site {url} --resume", flush=True)
    second_log = OUTPUT / "enrichment-2.log"
    resumed = subprocess.run([*cmd, "--resume"], cwd=HERE, stdout=second_log.open("w"),
                             stderr=subprocess.STDOUT, timeout=300)
    print(f"  resumed; checkpoint: {stage_summary('enrichment')}")
    if resumed.returncode != 0:
        sys.exit(f"the resumed enrichment stage failed: see {second_log}")


def restart_sessions(url: str) -> None:
    with urllib.request.urlopen(f"{url}/_restart") as response:
        response.read()
    print("  the shop restarted meanwhile: every login session is gone")


def run_stage(spider: str, args: list[str], feed: Path, at: int, sig: int,
              while_down: Callable[[], None] | None = None) -> None:
    first_log = OUTPUT / f"{spider}-1.log"
    interrupt_when(scrapy_crawl(spider, *args, log=first_log), feed, at, sig)
    how = "SIGKILL" if sig == signal.SIGKILL else "SIGTERM (graceful stop)"
    print(f"  interrupted with {how} after {len(lines(feed))} items; "
          f"closed: {finish_reason(first_log)}")
    print(f"  checkpoint: {stage_summary(spider)}")
    if while_down is not None:
        while_down()
    second_log = OUTPUT / f"{spider}-2.log"
    resumed = scrapy_crawl(spider, *args, "-s", "CHECKPOINT_RESUME=1", log=second_log)
    resumed.wait(300)
    print(f"  resumed; closed: {finish_reason(second_log)}")
    print(f"  checkpoint: {stage_summary(spider)}")
    if resumed.returncode != 0 or finish_reason(second_log) != "finished":
        sys.exit(f"the resumed {spider} stage did not finish: see {second_log}")


def main() -> None:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir()
    site = subprocess.Popen(
        [sys.executable, "-m", "demo.site"], cwd=HERE, stdout=subprocess.PIPE, text=True
    )
    try:
        url = site.stdout.readline().strip()
        print(f"Demo shop serving on {url}\n")
        discovered = OUTPUT / "discovered.jsonl"
        validated = OUTPUT / "validated.jsonl"
        print("Stage 1: discovery")
        run_stage("discovery", ["-a", f"site={url}", "-o", str(discovered)], discovered,
                  at=400, sig=signal.SIGKILL)
        print("\nStage 2: validation")
        run_stage("validation", ["-a", f"input={discovered}", "-o", str(validated)], validated,
                  at=300, sig=signal.SIGTERM)
        print("\nStage 3: enrichment (asyncio + StageTracker)")
        run_enrichment(url, at=300)
        print("\nStage 4: orders, behind a login")
        orders = OUTPUT / "orders.jsonl"
        run_stage("orders", ["-a", f"site={url}", "-o", str(orders)], orders, at=80,
                  sig=signal.SIGKILL, while_down=lambda: restart_sessions(url))
    finally:
        site.terminate()
        site.wait(10)
    print("\n$ scrapy checkpoint list")
    subprocess.run([sys.executable, "-m", "scrapy.cmdline", "checkpoint", "list"], cwd=HERE)
    report(discovered, validated, OUTPUT / "enriched.jsonl", OUTPUT / "orders.jsonl", url)


def report(discovered: Path, validated: Path, enriched_file: Path, orders_file: Path,
           url: str) -> None:
    expected = {f"{url}/product/{p}" for p in range(len(CATEGORIES) * PAGES * PER_PAGE)}
    found = [item["url"] for item in lines(discovered)]
    checked = lines(validated)
    checked_urls = [item["url"] for item in checked]
    statuses = {}
    for item in checked:
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    wrong = [i for i in checked if i["status"] != product_status(int(i["url"].rsplit("/", 1)[1]))]
    alive = sorted(i["url"] for i in checked if i["status"] == 200)
    enriched = lines(enriched_file)
    enriched_urls = [item["url"] for item in enriched]
    mispriced = [
        item for item in enriched
        if item["price"] != product_price(int(item["url"].rsplit("/", 1)[1]))["price"]
    ]
    print("\nResult")
    print(f"  discovery:  {len(set(found))} of {len(expected)} product URLs found "
          f"({len(found) - len(set(found))} duplicate lines in the feed)")
    print(f"  validation: {len(set(checked_urls))} URLs checked "
          f"({len(checked_urls) - len(set(checked_urls))} duplicate lines), statuses {statuses}")
    print(f"  enrichment: {len(set(enriched_urls))} of {len(alive)} live products priced "
          f"({len(enriched_urls) - len(set(enriched_urls))} duplicate lines, "
          f"{len(mispriced)} wrong prices)")
    orders = lines(orders_file)
    order_ids = [item["order"] for item in orders]
    wrong_totals = [item for item in orders if item["total"] != order_total(item["order"])]
    print(f"  orders:     {len(set(order_ids))} of {ORDER_PAGES * 10} orders "
          f"({len(order_ids) - len(set(order_ids))} duplicate lines, "
          f"{len(wrong_totals)} wrong totals)")
    ok = (
        sorted(order_ids) == list(range(ORDER_PAGES * 10))  # each order once, none missing
        and not wrong_totals
        and sorted(found) == sorted(expected)  # every product URL, each exactly once
        and sorted(checked_urls) == sorted(expected)
        and not wrong
        and sorted(enriched_urls) == alive
        and not mispriced
    )
    print(f"\n{'OK: nothing lost, nothing duplicated across the interruptions.' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
