"""scrapy-resume: crash-proof checkpoint and resume for Scrapy crawls.

The names below are imported on first use: every ``scrapy`` command loads
``scrapy_resume.commands`` (an entry point), and a plain crawl should not pay
for importing the whole package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "Addon": "scrapy_resume.components.addon",
    "BaseCheckpointStore": "scrapy_resume.store.base",
    "Checkpoint": "scrapy_resume.components.cursors",
    "CheckpointConfig": "scrapy_resume.config",
    "CheckpointConfigError": "scrapy_resume.config",
    "CheckpointCookiesMiddleware": "scrapy_resume.components.cookies",
    "CheckpointCorrupt": "scrapy_resume.store.base",
    "CheckpointExtension": "scrapy_resume.components.extension",
    "CheckpointLocked": "scrapy_resume.store.base",
    "CheckpointMiddleware": "scrapy_resume.components.middleware",
    "CheckpointRefused": "scrapy_resume.lifecycle.stage",
    "CheckpointSpiderMiddleware": "scrapy_resume.components.spidermiddleware",
    "CheckpointStore": "scrapy_resume.store.sqlite.store",
    "CheckpointTampered": "scrapy_resume.store.base",
    "LeasedPriorityQueue": "scrapy_resume.components.leasedqueue",
    "RedisStore": "scrapy_resume.store.redis.store",
    "RequestStatus": "scrapy_resume.store.records",
    "SessionExpired": "scrapy_resume.signals",
    "SharedDupeFilter": "scrapy_resume.components.shareddupefilter",
    "ResumableFTPFeedStorage": "scrapy_resume.components.remotefeeds",
    "ResumableFileFeedStorage": "scrapy_resume.components.feedstorage",
    "ResumableGCSFeedStorage": "scrapy_resume.components.remotefeeds",
    "ResumableRemoteFeedStorage": "scrapy_resume.components.remotefeeds",
    "ResumableS3FeedStorage": "scrapy_resume.components.remotefeeds",
    "StageTracker": "scrapy_resume.tracker",
    "SQLPipeline": "scrapy_resume.pipelines",
    "checkpoint": "scrapy_resume.components.cursors",
    "item_id": "scrapy_resume.components.cursors",
}

__all__ = [
    "Addon",
    "BaseCheckpointStore",
    "Checkpoint",
    "CheckpointConfig",
    "CheckpointConfigError",
    "CheckpointCookiesMiddleware",
    "CheckpointCorrupt",
    "CheckpointExtension",
    "CheckpointLocked",
    "CheckpointMiddleware",
    "CheckpointRefused",
    "CheckpointSpiderMiddleware",
    "CheckpointStore",
    "CheckpointTampered",
    "LeasedPriorityQueue",
    "RedisStore",
    "RequestStatus",
    "ResumableFTPFeedStorage",
    "ResumableFileFeedStorage",
    "ResumableGCSFeedStorage",
    "ResumableRemoteFeedStorage",
    "ResumableS3FeedStorage",
    "SQLPipeline",
    "SessionExpired",
    "SharedDupeFilter",
    "StageTracker",
    "checkpoint",
    "item_id",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scrapy_resume' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:
    from scrapy_resume.components.addon import Addon
    from scrapy_resume.components.cookies import CheckpointCookiesMiddleware
    from scrapy_resume.components.cursors import Checkpoint, checkpoint, item_id
    from scrapy_resume.components.extension import CheckpointExtension
    from scrapy_resume.components.feedstorage import ResumableFileFeedStorage
    from scrapy_resume.components.leasedqueue import LeasedPriorityQueue
    from scrapy_resume.components.middleware import CheckpointMiddleware
    from scrapy_resume.components.shareddupefilter import SharedDupeFilter
    from scrapy_resume.components.spidermiddleware import CheckpointSpiderMiddleware
    from scrapy_resume.config import CheckpointConfig, CheckpointConfigError
    from scrapy_resume.lifecycle.stage import CheckpointRefused
    from scrapy_resume.pipelines import SQLPipeline
    from scrapy_resume.signals import SessionExpired
    from scrapy_resume.store.base import (
        BaseCheckpointStore,
        CheckpointCorrupt,
        CheckpointLocked,
        CheckpointTampered,
    )
    from scrapy_resume.store.records import RequestStatus
    from scrapy_resume.store.redis.store import RedisStore
    from scrapy_resume.store.sqlite.store import CheckpointStore
    from scrapy_resume.tracker import StageTracker
