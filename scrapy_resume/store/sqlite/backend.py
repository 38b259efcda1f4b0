"""SqliteBackend: stages as files ``DIR/STAGE.sqlite``, each locked with a kernel lock beside it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scrapy_resume.store.base import StageBackend
from scrapy_resume.store.sqlite.files import create_stage, move_aside
from scrapy_resume.store.sqlite.lock import StageLock
from scrapy_resume.store.sqlite.schema import COMPANIONS
from scrapy_resume.store.sqlite.store import CheckpointStore


class SqliteBackend(StageBackend):
    """``DIR/STAGE.sqlite``, locked with a kernel lock beside it."""

    kind = "sqlite"

    def __init__(self, directory: Path, *, fsync: bool = False):
        self.directory = directory
        self.fsync = fsync

    def path(self, stage: str) -> Path:
        return self.directory / f"{stage}.sqlite"

    def location(self, stage: str) -> str:
        return str(self.path(stage))

    def exists(self, stage: str) -> bool:
        return self.path(stage).exists()

    def open(self, stage: str, *, read_only: bool = False) -> CheckpointStore:
        return CheckpointStore(self.path(stage), fsync=self.fsync, read_only=read_only)

    def create(self, stage: str, owner: str, state: dict[str, Any]) -> CheckpointStore:
        return create_stage(self.path(stage), stage, owner, state, fsync=self.fsync)

    def lock(self, stage: str, *, shared: bool = False) -> StageLock:
        if shared:
            raise ValueError("a SQLite checkpoint cannot be shared by several workers")
        return StageLock(self.path(stage))

    def move_aside(self, stage: str, also: Sequence[str] = ()) -> str:
        return str(move_aside(self.path(stage)))  # (``also`` names Redis keys)

    def remove(self, stage: str) -> None:
        path = self.path(stage)
        companions = [Path(f"{path}{suffix}") for suffix in (*COMPANIONS, ".lock")]
        for file in (path, *companions):
            file.unlink(missing_ok=True)

    def stages(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.sqlite"))

    def where(self) -> str:
        if not self.directory.is_dir():
            return f"{self.directory} (the directory does not exist)"
        return str(self.directory)

    def holders(self, stage: str) -> list[str]:
        holder = self.lock(stage).held_by_another()
        return [holder] if holder is not None else []
