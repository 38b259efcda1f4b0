"""scrapy-resume: crash-proof checkpoint and resume for Scrapy crawls."""

from __future__ import annotations

from .addon import Addon
from .config import CheckpointConfig, CheckpointConfigError
from .cursors import Checkpoint, checkpoint
from .extension import CheckpointExtension
from .feeds import ResumableFileFeedStorage
from .middleware import CheckpointMiddleware
from .spidermiddleware import CheckpointSpiderMiddleware
from .sqlite_store import CheckpointStore
from .store import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    CheckpointTampered,
    RequestStatus,
)

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
    "CheckpointSpiderMiddleware",
    "CheckpointStore",
    "CheckpointTampered",
    "RequestStatus",
    "ResumableFileFeedStorage",
    "checkpoint",
]

__version__ = "0.1.0"
