"""Item pipelines written the way a project would, for the database tests.

``HookedBatchPipeline`` is the README's example: rows buffered, written in
one transaction when the checkpoint is about to commit, upserted on
``item_id``. ``PerItemUpsertPipeline`` commits each item on its own,
upserting on ``item_id``. Both write to the SQLite file TEST_ITEMS_DB.
"""

from __future__ import annotations

import json
import sqlite3

from itemadapter import ItemAdapter

from scrapy_resume import item_id
from scrapy_resume.signals import checkpoint_before_commit

CREATE = "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, item TEXT)"
UPSERT = ("INSERT INTO items (id, item) VALUES (?, ?) "
          "ON CONFLICT (id) DO UPDATE SET item = excluded.item")


class SQLitePipeline:
    """What both share: the crawler, and the SQLite file TEST_ITEMS_DB."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self):
        self.db = sqlite3.connect(self.crawler.settings["TEST_ITEMS_DB"])
        self.db.execute(CREATE)

    def row(self, item):
        return item_id(item, self.crawler), json.dumps(ItemAdapter(item).asdict())

    def close_spider(self):
        self.db.close()


class HookedBatchPipeline(SQLitePipeline):
    def __init__(self, crawler):
        super().__init__(crawler)
        self.rows = []
        crawler.signals.connect(self.flush, signal=checkpoint_before_commit)

    def process_item(self, item):
        self.rows.append(self.row(item))
        return item

    def flush(self, item_ids=(), **kwargs):
        if self.rows:
            with self.db:  # one transaction, committed before the checkpoint's
                self.db.executemany(UPSERT, self.rows)
            self.rows = []

    def close_spider(self):
        self.flush()
        super().close_spider()


class PerItemUpsertPipeline(SQLitePipeline):
    def process_item(self, item):
        with self.db:
            self.db.execute(UPSERT, self.row(item))
        return item


class NaivePerItemPipeline(SQLitePipeline):
    """What most projects write first: an INSERT and a commit per item, into the
    database TEST_ITEMS_DB names (a SQLite path, or a postgresql:// URL). The
    benchmark's baseline (bench/databases.py)."""

    def open_spider(self):
        target = self.crawler.settings["TEST_ITEMS_DB"]
        if target.startswith("postgresql://"):
            import psycopg

            self.db = psycopg.connect(target)
            self.placeholder = "%s"
        else:
            self.db = sqlite3.connect(target)
            self.placeholder = "?"
        self.db.execute("CREATE TABLE IF NOT EXISTS naive (id SERIAL, item TEXT)"
                        if self.placeholder == "%s" else
                        "CREATE TABLE IF NOT EXISTS naive (id INTEGER PRIMARY KEY, item TEXT)")
        self.db.commit()

    def process_item(self, item):
        self.db.execute(f"INSERT INTO naive (item) VALUES ({self.placeholder})",
                        (json.dumps(ItemAdapter(item).asdict()),))
        self.db.commit()
        return item
