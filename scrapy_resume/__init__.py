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
from .stage import CheckpointRefused
from .store import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    CheckpointTampered,
    RequestStatus,
)
from .tracker import StageTracker

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
    "CheckpointRefused",
    "CheckpointTampered",
    "RequestStatus",
    "ResumableFileFeedStorage",
    "StageTracker",
    "checkpoint",
]

__version__ = "0.1.0"
