"""SQLPipeline: items into SQLite or PostgreSQL, one row each, across crashes.

Each item becomes a row keyed by (stage, item id). The rows are buffered and
written in one transaction when the checkpoint is about to commit
(checkpoint_before_commit), before it marks their requests done: a crash
before the checkpoint's commit makes the crawl fetch those requests again,
and their items come back with the same ids, replacing the rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThread

from scrapy_resume.components.cursors import item_id
from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.config import CheckpointConfig, CheckpointConfigError
from scrapy_resume.engine.itemids import item_as_json
from scrapy_resume.pipelines.databases import Row, check_table_name, items_database, safe_url
from scrapy_resume.signals import checkpoint_before_commit

logger = logging.getLogger(__name__)

# rows a batch, without the checkpoint (nothing calls the commit hook then)
UNPROTECTED_BATCH = 100

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from scrapy_resume.pipelines.databases import ItemsDatabase


class SQLPipeline:
    """Set ``CHECKPOINT_ITEMS_DB`` (``sqlite:///items.db``, ``postgresql://...``)
    and, if the stage name will not do, ``CHECKPOINT_ITEMS_TABLE``. Give it the
    highest order number in ITEM_PIPELINES: it stores what the others let through."""

    def __init__(self, crawler: Crawler, database: ItemsDatabase, table: str | None):
        self.crawler = crawler
        self.database = database
        self.table = table
        self.stage = ""
        self.rows: list[Row] = []  # written at the next commit
        self.writing = DeferredLock()  # one write at a time, on one connection
        self.closed = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SQLPipeline:
        settings = crawler.settings
        url = settings.get("CHECKPOINT_ITEMS_DB")
        if not url:
            raise CheckpointConfigError(
                "SQLPipeline is in ITEM_PIPELINES but CHECKPOINT_ITEMS_DB is not set: set it "
                "to sqlite:///items.db or postgresql://user@host:port/dbname."
            )
        table = settings.get("CHECKPOINT_ITEMS_TABLE")
        pipeline = cls(crawler, items_database(str(url)),
                       check_table_name(str(table)) if table else None)
        crawler.signals.connect(pipeline.before_commit, signal=checkpoint_before_commit)
        return pipeline

    async def open_spider(self, spider: Any = None) -> None:
        spider = self.crawler.spider
        try:
            config = CheckpointConfig.from_settings(self.crawler.settings)
            self.stage = config.stage_name(spider.name) if config.enabled else spider.name
        except CheckpointConfigError:  # (the checkpoint refuses the crawl, saying why)
            config, self.stage = CheckpointConfig(), spider.name
        table = self.table or check_table_name(self.stage, "the stage name (the default table)")
        await maybe_deferred_to_future(deferToThread(self.database.open, table, config.fsync))

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        runtime = runtime_of(self.crawler)
        protected = runtime is not None and runtime.active
        url = runtime.item_url(item) if protected else ""  # type: ignore[union-attr]
        written_at = datetime.now(timezone.utc).isoformat()
        self.rows.append(
            (item_id(item, self.crawler), self.stage, url, item_as_json(item), written_at)
        )
        if not protected and len(self.rows) >= UNPROTECTED_BATCH:
            await self.flush()  # no checkpoint commits: no hook calls either
        return item

    async def before_commit(self, item_ids: list[str], **signal_args: Any) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Write every buffered row (those of the commit's items, and maybe more:
        written again after a crash, they replace themselves). On failure they
        stay buffered, and the error fails the commit."""
        await maybe_deferred_to_future(self.writing.run(self._write_buffered))

    def _write_buffered(self) -> Deferred | None:
        if not self.rows:
            return None
        if self.closed:
            raise RuntimeError(
                f"{len(self.rows)} item(s) were not written: the items database closed after "
                f"a failed write (see the error above)"
            )
        rows, self.rows = self.rows, []

        def keep(failure: Any) -> Any:
            self.rows[:0] = rows
            return failure

        return deferToThread(self.database.write, rows).addErrback(keep)

    async def close_spider(self, spider: Any = None) -> None:
        # The checkpoint's last commit comes after the pipelines close: write
        # everything now. If this fails, the rows stay buffered and that commit's
        # hook fails (nothing is marked done that is not written).
        try:
            await self.flush()
        except Exception as exc:
            logger.error(
                "SQLPipeline could not write %d item(s) to %s (%s): the checkpoint does not "
                "mark their requests done. Resume with -s CHECKPOINT_RESUME=1 once the "
                "database takes writes again.", len(self.rows), safe_url(self.database.url),
                exc, extra={"spider": self.crawler.spider},
            )
        finally:
            self.closed = True
            await maybe_deferred_to_future(self.writing.run(self._close))

    def _close(self) -> Deferred:
        return deferToThread(self.database.close)
