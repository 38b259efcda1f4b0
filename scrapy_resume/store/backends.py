"""Where stages live: a directory of SQLite files (the default), or a Redis
server (``CHECKPOINT_BACKEND = "redis://HOST:PORT/DB"``).

A backend finds, opens, locks, backs up and lists stages; the store it opens
speaks the ledger. Nothing outside this module and the two store modules knows
which backend is in use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from scrapy_resume.store.base import backup_name
from scrapy_resume.store.redis import (
    NAMESPACE,
    RedisStageLock,
    RedisStore,
    StageKeys,
    client_for,
    describe_url,
    new_worker_id,
)
from scrapy_resume.store.redis_leases import StageWorker, live_workers, server_time_ms
from scrapy_resume.store.signing import RequestSigner
from scrapy_resume.store.sqlite import CheckpointStore, StageLock

if TYPE_CHECKING:
    from scrapy_resume.config import CheckpointConfig
    from scrapy_resume.store.base import BaseCheckpointStore


class Lock(Protocol):
    def acquire(self) -> None: ...  # raises CheckpointLocked
    def release(self) -> None: ...
    def held_by_another(self) -> str | None: ...


class StageBackend(ABC):
    kind: str

    @abstractmethod
    def location(self, stage: str) -> str:
        """Where the stage lives, for messages."""

    @abstractmethod
    def exists(self, stage: str) -> bool: ...

    @abstractmethod
    def open(self, stage: str) -> BaseCheckpointStore: ...

    @abstractmethod
    def create(self, stage: str, owner: str, state: dict[str, Any]) -> BaseCheckpointStore:
        """A new stage, whole or not at all, with its first state (its configuration)."""

    @abstractmethod
    def lock(self, stage: str, *, shared: bool = False) -> Lock:
        """One process per stage; ``shared``: a worker's membership of a stage
        that several workers crawl together (scrapy-redis), on a shared backend."""

    @abstractmethod
    def move_aside(self, stage: str) -> str:
        """Keep the stage as a backup under another name; returns where it went."""

    @abstractmethod
    def remove(self, stage: str) -> None: ...

    @abstractmethod
    def stages(self) -> list[str]:
        """Every stage the backend holds (backups excluded), sorted."""

    @abstractmethod
    def where(self) -> str:
        """The backend, for messages: a directory, or a Redis URL."""

    @abstractmethod
    def holders(self, stage: str) -> list[str]:
        """The processes running the stage now (none: it is safe to reset)."""

    def workers(self, stage: str) -> dict[str, Any]:
        """A shared stage's live workers and leases, for ``scrapy checkpoint show``."""
        return {}

    def close(self) -> None:
        """Let go of connections."""

    def durability_warning(self) -> str | None:
        """What the crash-safety promise would not survive with this backend as set up."""
        return None


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

    def open(self, stage: str) -> CheckpointStore:
        return CheckpointStore(self.path(stage), fsync=self.fsync)

    def create(self, stage: str, owner: str, state: dict[str, Any]) -> CheckpointStore:
        return CheckpointStore.create(self.path(stage), stage, owner, state, fsync=self.fsync)

    def lock(self, stage: str, *, shared: bool = False) -> StageLock:
        if shared:
            raise ValueError("a SQLite checkpoint cannot be shared by several workers")
        return StageLock(self.path(stage))

    def move_aside(self, stage: str) -> str:
        return str(CheckpointStore.move_aside(self.path(stage)))

    def remove(self, stage: str) -> None:
        path = self.path(stage)
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")):
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


class RedisBackend(StageBackend):
    """Keys ``scrapy_resume:STAGE:*`` in one Redis database. The request-signing
    secret stays in the local checkpoint directory: copy ``checkpoint.secret``
    to every machine that runs a worker of the stage."""

    kind = "redis"

    def __init__(self, url: str, directory: Path, *, lease_seconds: float = 300.0,
                 worker_id: str | None = None):
        self.url = url
        self.directory = directory
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or new_worker_id()
        self.client: Any = client_for(url)
        self.described = describe_url(url)

    def location(self, stage: str) -> str:
        return f"{self.described} (stage {stage})"

    def exists(self, stage: str) -> bool:
        return bool(self.client.exists(StageKeys(stage).meta))

    def open(self, stage: str) -> BaseCheckpointStore:
        # a connection of its own: closing the store leaves the backend usable
        return RedisStore(client_for(self.url), stage, RequestSigner(self.directory),
                          self.location(stage))

    def create(self, stage: str, owner: str, state: dict[str, Any]) -> BaseCheckpointStore:
        store = self.open(stage)
        store.initialize(stage, owner, state)
        return store

    def lock(self, stage: str, *, shared: bool = False) -> Lock:
        if shared:
            return StageWorker(self.client, StageKeys(stage), self.lease_seconds, self.worker_id)
        return RedisStageLock(self.client, StageKeys(stage), self.lease_seconds, self.worker_id)

    def move_aside(self, stage: str) -> str:
        backup = backup_name(stage, self.exists)
        moves = [(old, new) for old, new in zip(StageKeys(stage).data(), StageKeys(backup).data())
                 if self.client.exists(old)]
        pipe = self.client.pipeline(transaction=True)  # MULTI: the whole stage, or none of it
        for old, new in moves:
            pipe.rename(old, new)
        pipe.execute()
        return self.location(backup)

    def remove(self, stage: str) -> None:
        keys = StageKeys(stage)
        self.client.delete(*keys.data(), keys.lock)

    def where(self) -> str:
        return self.described

    def holders(self, stage: str) -> list[str]:
        holder = self.lock(stage).held_by_another()
        workers = [w["worker"] for w in self.workers(stage)["workers"]]
        return ([holder] if holder is not None else []) + workers

    def workers(self, stage: str) -> dict[str, Any]:
        keys = StageKeys(stage)
        owners = Counter(owner.decode() for owner in self.client.hvals(keys.lease_owner))
        now = server_time_ms(self.client)
        expired = self.client.zcount(keys.lease_expiry, "-inf", now)
        return {
            "workers": [
                {"worker": worker, "leases": owners.get(worker, 0)}
                for worker in live_workers(self.client, keys)
            ],
            "leases": {"outstanding": sum(owners.values()), "expired": int(expired)},
        }

    def stages(self) -> list[str]:
        names = set()
        for key in self.client.scan_iter(match=f"{NAMESPACE}:*:meta", count=1000):
            stage = key.decode()[len(NAMESPACE) + 1:-len(":meta")]
            if ".bak-" not in stage:
                names.add(stage)
        return sorted(names)

    def close(self) -> None:
        self.client.close()

    def durability_warning(self) -> str | None:
        try:
            appendonly = self.client.config_get("appendonly").get(b"appendonly", b"?")
            save = self.client.config_get("save").get(b"save", b"")
        except Exception:  # CONFIG is often disabled on managed servers: nothing to tell
            return None
        if appendonly == b"yes":
            return None
        if save:
            return (
                f"The Redis server at {self.described} runs without the append-only file "
                f"(appendonly no), with snapshots only: if the server restarts, the checkpoint "
                f"goes back to the last snapshot and may lose commits. Set appendonly yes "
                f"(appendfsync everysec or always) for crash-safe checkpoints."
            )
        return (
            f"The Redis server at {self.described} runs without persistence (appendonly no, "
            f"no snapshots): if the server restarts, the checkpoint is gone. Set appendonly yes "
            f"(appendfsync everysec or always) for crash-safe checkpoints."
        )


def backend_for(config: CheckpointConfig) -> StageBackend:
    if config.backend:
        return RedisBackend(config.backend, config.directory, lease_seconds=config.lease_seconds)
    return SqliteBackend(config.directory, fsync=config.fsync)
