"""Rows per second into a database: SQLPipeline (exactly-once, checkpointed)
vs a naive pipeline that commits each item (plain Scrapy), same run.

    python bench/databases.py [--pages 5000] [--rounds 3] [--no-postgres]

Crawls a local site (tests/mockserver.py, on 127.0.0.1) of ``--pages``
pages, one item each, in alternating rounds: plain Scrapy with the naive
pipeline (tests/spiders/dbpipelines.py: an INSERT and a commit per item), and
scrapy-resume with ``scrapy_resume.pipelines.SQLPipeline`` (rows upserted in
one transaction a checkpoint commit). Into SQLite (a file in a temporary
directory) and into PostgreSQL (a real server started for the run, fsync
on, as a production server has it). Prints rows per second of each (rows
over Scrapy's ``elapsed_time_seconds``) and their median ratio, and the
items per second of crawls writing no database, plain and checkpointed: the
ceilings each is bounded by (the site is served by one Python process).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.crawling import ENABLING
from tests.pgserver import PostgresServer, postgres_binaries

NAIVE = {"tests.spiders.dbpipelines.NaivePerItemPipeline": 900}
SQL = {"scrapy_resume.pipelines.SQLPipeline": 900}


def start_site() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "mockserver.py")], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def count_rows(database: str, table: str) -> int:
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as db:
            return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    with sqlite3.connect(database) as db:
        return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def crawl(variant: str, database: str, start: str, workdir: Path) -> float:
    """One crawl in a subprocess; its rows per second."""
    workdir.mkdir(parents=True)
    stats_file = workdir / "stats.json"
    settings = {"LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": "0",
                "CHECKPOINT_DIR": str(workdir / "checkpoints")}
    if variant in ("none", "checkpoint"):  # the ceilings: writing no database
        settings.update(ENABLING["off" if variant == "none" else "addon"])
        table = ""
    elif variant == "naive":
        settings.update(ENABLING["off"])
        settings.update({"ITEM_PIPELINES": json.dumps(NAIVE), "TEST_ITEMS_DB": database})
        table = "naive"
    else:
        settings.update(ENABLING["addon"])
        url = database if database.startswith("postgresql://") else f"sqlite:///{database}"
        settings.update({"ITEM_PIPELINES": json.dumps(SQL), "CHECKPOINT_ITEMS_DB": url})
        table = "graph"
    cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider",
           str(REPO / "tests/spiders/graph.py"), "-a", f"start={start}",
           "-a", f"stats_file={stats_file}"]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    subprocess.run(cmd, cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = json.loads(stats_file.read_text())
    rows = count_rows(database, table) if table else stats["item_scraped_count"]
    elapsed = float(stats["elapsed_time_seconds"])
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    site, base = start_site()
    server = None
    if not args.no_postgres and postgres_binaries():
        server = PostgresServer(durable=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results: dict[str, dict[str, list[float]]] = {}
            ceilings: dict[str, list[float]] = {"none": [], "checkpoint": []}
            for round_ in range(args.rounds):
                for variant, rates in ceilings.items():
                    name = f"r{round_}-{variant}"
                    start = f"{base}/{name}/g/{args.pages}/5/0"
                    rates.append(crawl(variant, "", start, Path(tmp) / name))
                    print(f"  round {round_ + 1} no database {variant:10}: "
                          f"{rates[-1]:8,.0f} items/s")
                for kind in ["sqlite", *(["postgresql"] if server else [])]:
                    for variant in ("naive", "sql"):
                        name = f"r{round_}-{kind}-{variant}"
                        if kind == "postgresql":
                            database = server.create_database(name.replace("-", "_"))
                        else:
                            database = str(Path(tmp) / f"{name}.db")
                        start = f"{base}/{name}/g/{args.pages}/5/0"
                        rate = crawl(variant, database, start, Path(tmp) / name)
                        results.setdefault(kind, {}).setdefault(variant, []).append(rate)
                        print(f"  round {round_ + 1} {kind:10} {variant:5}: {rate:8,.0f} rows/s")
            print(f"\n{args.pages:,} pages, one item each, {args.rounds} rounds (medians):")
            plain, checkpointed = (statistics.median(ceilings[v]) for v in ceilings)
            print(f"  no database: plain Scrapy {plain:,.0f} items/s, "
                  f"checkpointed {checkpointed:,.0f} items/s")
            for kind, rates in results.items():
                naive, sql = (statistics.median(rates[v]) for v in ("naive", "sql"))
                ratios = [s / n for n, s in zip(rates["naive"], rates["sql"])]
                print(f"  {kind:10}  naive per-item commit {naive:8,.0f} rows/s   "
                      f"SQLPipeline {sql:8,.0f} rows/s   ratio {statistics.median(ratios):.2f}x")
            if server is None:
                print("  (PostgreSQL not measured: not installed, or --no-postgres)")
    finally:
        site.terminate()
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
