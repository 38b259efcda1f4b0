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
    "Addon": ".addon",
    "BaseCheckpointStore": ".store",
    "Checkpoint": ".cursors",
    "CheckpointConfig": ".config",
    "CheckpointConfigError": ".config",
    "CheckpointCorrupt": ".store",
    "CheckpointExtension": ".extension",
    "CheckpointLocked": ".store",
    "CheckpointMiddleware": ".middleware",
    "CheckpointRefused": ".stage",
    "CheckpointSpiderMiddleware": ".spidermiddleware",
    "CheckpointStore": ".sqlite_store",
    "CheckpointTampered": ".store",
    "LeasedPriorityQueue": ".leases",
    "RedisStore": ".redis_store",
    "RequestStatus": ".store",
    "ResumableFileFeedStorage": ".feeds",
    "StageTracker": ".tracker",
    "checkpoint": ".cursors",
}

__all__ = [
    "Addon",
    "BaseCheckpointStore",
    "Checkpoint",
    "CheckpointConfig",
    "CheckpointConfigError",
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
    "ResumableFileFeedStorage",
    "StageTracker",
    "checkpoint",
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
    from .addon import Addon
    from .config import CheckpointConfig, CheckpointConfigError
    from .cursors import Checkpoint, checkpoint
    from .extension import CheckpointExtension
    from .feeds import ResumableFileFeedStorage
    from .leases import LeasedPriorityQueue
    from .middleware import CheckpointMiddleware
    from .redis_store import RedisStore
    from .spidermiddleware import CheckpointSpiderMiddleware
    from .sqlite_store import CheckpointStore
    from .stage import CheckpointRefused
    from .store import (
        BaseCheckpointStore,
        CheckpointCorrupt,
        CheckpointLocked,
        CheckpointTampered,
        RequestStatus,
    )
    from .tracker import StageTracker
