"""RedisBackend: stages as keys ``scrapy_resume:STAGE:*`` in one Redis database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scrapy_resume.store.base import BaseCheckpointStore, Lock, StageBackend, backup_name
from scrapy_resume.store.redis.connection import (
    client_for,
    describe_url,
    new_worker_id,
    server_time_ms,
)
from scrapy_resume.store.redis.keys import NAMESPACE, StageKeys
from scrapy_resume.store.redis.leases import StageWorker, live_workers
from scrapy_resume.store.redis.lock import RedisStageLock
from scrapy_resume.store.redis.scripts import lua
from scrapy_resume.store.redis.store import RedisStore
from scrapy_resume.store.signing import RequestSigner


class RedisBackend(StageBackend):
    """Keys ``scrapy_resume:STAGE:*`` in one Redis database. The request-signing
    secret stays in the local checkpoint directory: copy ``checkpoint.secret``
    to every machine that runs a worker of the stage."""

    kind = "redis"
    shares_queues = True

    def __init__(self, url: str, directory: Path, *, lease_seconds: float = 300.0,
                 worker_id: str | None = None, retry_seconds: float = 0.0):
        self.url = url
        self.directory = directory
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or new_worker_id()
        self.retry_seconds = retry_seconds  # a server restart waited out (connection.py)
        self.client: Any = client_for(url, retry_seconds)
        self.described = describe_url(url)

    def location(self, stage: str) -> str:
        return f"{self.described} (stage {stage})"

    def exists(self, stage: str) -> bool:
        return bool(self.client.exists(StageKeys(stage).meta))

    def open(self, stage: str, *, read_only: bool = False) -> BaseCheckpointStore:
        # a connection of its own: closing the store leaves the backend usable (and
        # reading a store writes nothing: read_only changes nothing here)
        return RedisStore(client_for(self.url, self.retry_seconds), stage,
                          RequestSigner(self.directory), self.location(stage))

    def create(self, stage: str, owner: str, state: dict[str, Any]) -> BaseCheckpointStore:
        store = self.open(stage)
        store.initialize(stage, owner, state)
        return store

    def lock(self, stage: str, *, shared: bool = False) -> Lock:
        if shared:
            return StageWorker(self.client, StageKeys(stage), self.lease_seconds, self.worker_id)
        return RedisStageLock(self.client, StageKeys(stage), self.lease_seconds, self.worker_id)

    def move_aside(self, stage: str, also: Sequence[str] = ()) -> str:
        backup = backup_name(stage, self.exists)
        suffix = backup[len(stage):]  # e.g. graph:requests -> graph:requests.bak-20261203-...
        old = [*StageKeys(stage).data(), *also]
        new = [*StageKeys(backup).data(), *(key + suffix for key in also)]
        # a script: the whole stage moves, or none of it, and once (lua/move_aside.lua)
        self.client.eval(lua("move_aside"), len(old) + len(new), *old, *new)
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
