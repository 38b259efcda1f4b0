"""Which backend a crawl's stages live in: a directory of SQLite files (the
default), or a Redis server (``CHECKPOINT_BACKEND = "redis://HOST:PORT/DB"``).

Nothing outside the store knows which backend is in use. The Redis backend is
imported only when it is asked for: a crawl on SQLite loads none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy_resume.store.sqlite.backend import SqliteBackend

if TYPE_CHECKING:
    from scrapy_resume.config import CheckpointConfig
    from scrapy_resume.store.base import StageBackend


def backend_for(config: CheckpointConfig) -> StageBackend:
    if config.backend:
        from scrapy_resume.store.redis.backend import RedisBackend

        return RedisBackend(config.backend, config.directory, lease_seconds=config.lease_seconds,
                            retry_seconds=config.redis_retry_seconds)
    return SqliteBackend(config.directory, fsync=config.fsync)
