"""Items into databases exactly once: real crawls SIGKILLed and resumed, with
the SQL pipeline (SQLite and a real PostgreSQL server) and with pipelines
written the way a project would, on item_id and the commit hook."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter

import pytest

from tests.crawling import graph_crawl, graph_pages, run_until_finished, was_killed

SIZE = 2000
KILLS = 4
SQL_PIPELINE = json.dumps({"scrapy_resume.pipelines.SQLPipeline": 900})


def sqlite_rows(path, table: str) -> list[tuple[str, dict]]:
    with sqlite3.connect(path) as db:
        return [(row_id, json.loads(item))
                for row_id, item in db.execute(f'SELECT item_id, item FROM "{table}"')]


def postgres_rows(url: str, table: str) -> list[tuple[str, dict]]:
    import psycopg

    with psycopg.connect(url) as db:
        return list(db.execute(f'SELECT item_id, item FROM "{table}"'))


def postgres_row_count(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        exists = db.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()[0]
        return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] if exists else 0


def assert_one_row_per_page(rows, mockserver, ns, size=SIZE) -> None:
    urls = Counter(item["url"] for _, item in rows)
    assert {url for url, n in urls.items() if n > 1} == set()  # none twice
    assert sorted(urls) == graph_pages(mockserver, ns, size, 5)  # none missing
    assert len({row_id for row_id, _ in rows}) == len(rows) == size


def crash_four_times(crawl, mockserver, ns, seed: str) -> None:
    runs = run_until_finished(crawl, mockserver, ns, random.Random(seed),
                              interruptions=[{"signal": "KILL"}] * KILLS, stage="graph")
    assert len(runs) == KILLS + 1
    assert all(was_killed(result) for result, _ in runs[:-1])
    assert runs[-1][0].finish_reason == "finished"


def test_sql_pipeline_into_sqlite_writes_each_item_once_across_sigkills(tmp_path, mockserver):
    ns = mockserver.namespace()
    database = tmp_path / "items.db"
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, feed=None, settings={
        "ITEM_PIPELINES": SQL_PIPELINE, "CHECKPOINT_ITEMS_DB": f"sqlite:///{database}",
    })
    crash_four_times(crawl, mockserver, ns, "sql-sqlite")

    rows = sqlite_rows(database, "graph")  # the table is named after the stage
    assert_one_row_per_page(rows, mockserver, ns)
    with sqlite3.connect(database) as db:
        (stages,) = db.execute('SELECT group_concat(DISTINCT stage) FROM "graph"').fetchone()
    assert stages == "graph"


def test_sql_pipeline_into_postgresql_writes_each_item_once_across_sigkills(
    tmp_path, mockserver, postgres_server
):
    ns = mockserver.namespace()
    url = postgres_server.create_database(f"items_{ns}")
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, feed=None, settings={
        "ITEM_PIPELINES": SQL_PIPELINE, "CHECKPOINT_ITEMS_DB": url,
        "CHECKPOINT_ITEMS_TABLE": "pages",
    })
    crash_four_times(crawl, mockserver, ns, "sql-postgresql")

    assert_one_row_per_page(postgres_rows(url, "pages"), mockserver, ns)


@pytest.mark.parametrize("pipeline", ["HookedBatchPipeline", "PerItemUpsertPipeline"])
def test_a_project_pipeline_on_item_id_writes_each_item_once_across_sigkills(
    tmp_path, mockserver, pipeline
):
    ns = mockserver.namespace()
    database = tmp_path / "items.db"
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, feed=None, settings={
        "ITEM_PIPELINES": json.dumps({f"tests.spiders.dbpipelines.{pipeline}": 900}),
        "TEST_ITEMS_DB": str(database),
    })
    crash_four_times(crawl, mockserver, ns, f"project-{pipeline}")

    with sqlite3.connect(database) as db:
        rows = [(row_id, json.loads(item)) for row_id, item in db.execute("SELECT * FROM items")]
    assert_one_row_per_page(rows, mockserver, ns)


def test_postgresql_stopped_mid_crawl_stops_the_crawl_and_a_resume_writes_every_row_once(
    tmp_path, mockserver, postgres_server
):
    ns = mockserver.namespace()
    url = postgres_server.create_database(f"items_{ns}")
    size = 1000
    crawl = graph_crawl(tmp_path, mockserver, ns, size, feed=None, settings={
        "ITEM_PIPELINES": SQL_PIPELINE, "CHECKPOINT_ITEMS_DB": url,
        "CHECKPOINT_ITEMS_TABLE": "pages",
    })
    mockserver.configure(ns, delay_ms=20)  # (pages keep coming while the server stops)
    proc = crawl.start()
    deadline = time.monotonic() + 60
    while postgres_row_count(url, "pages") < 50:
        assert proc.poll() is None and time.monotonic() < deadline, crawl.log_path.read_text()
        time.sleep(0.05)
    postgres_server.stop("immediate")
    try:
        stopped = crawl.finish(proc)
    finally:
        postgres_server.start()
        postgres_server.wait_ready()
    assert stopped.finish_reason == "checkpoint_write_error", stopped.log[-3000:]
    assert "checkpoint_before_commit handler(s) failed" in stopped.log
    written = len(postgres_rows(url, "pages"))
    assert written < size
    assert crawl.summary("graph").done <= written  # nothing done that is not written

    mockserver.configure(ns, delay_ms=0)
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    assert_one_row_per_page(postgres_rows(url, "pages"), mockserver, ns, size)
    assert crawl.summary("graph").status == "completed"


def test_a_locked_sqlite_database_stops_the_crawl_and_a_resume_writes_every_row_once(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    database = tmp_path / "items.db"
    size = 200
    settings = {"ITEM_PIPELINES": SQL_PIPELINE, "CHECKPOINT_ITEMS_DB": f"sqlite:///{database}"}
    crawl = graph_crawl(tmp_path, mockserver, ns, size, feed=None, settings=settings)
    # Another connection holds the items database locked from the first page on:
    # the first write fails after SQLite's 5-second wait, while the crawl goes on
    # (200 pages answered in 0.5 s, 8 at a time, take 12 s at least).
    mockserver.configure(ns, delay_ms=500)
    locked = crawl.run(TEST_LOCK_AT_FIRST_PAGE=str(database))
    mockserver.configure(ns, delay_ms=0)
    assert locked.finish_reason == "checkpoint_write_error", locked.log[-3000:]
    assert "database is locked" in locked.log
    assert crawl.summary("graph").done == 0
    assert sqlite_rows(database, "graph") == []

    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished", resumed.log[-3000:]
    assert_one_row_per_page(sqlite_rows(database, "graph"), mockserver, ns, size)


def test_a_refused_run_leaves_the_rows_as_they_were(tmp_path, mockserver):
    ns = mockserver.namespace()
    database = tmp_path / "items.db"
    settings = {"ITEM_PIPELINES": SQL_PIPELINE, "CHECKPOINT_ITEMS_DB": f"sqlite:///{database}"}
    crawl = graph_crawl(tmp_path, mockserver, ns, 50, feed=None, settings=settings)
    assert crawl.run().finish_reason == "finished"
    before = sqlite_rows(database, "graph")
    assert len(before) == 50

    refused = crawl.run(JOBDIR=str(tmp_path / "job"))  # two recovery systems: refused
    assert refused.finish_reason == "checkpoint_jobdir_conflict", refused.log[-3000:]
    assert sqlite_rows(database, "graph") == before
