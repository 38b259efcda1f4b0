"""The checkpoint store's domain-level interface, and the types it speaks in.

Components talk to a :class:`BaseCheckpointStore` in terms of the ledger:
pending requests, settled requests, cursors, counters, feed offsets, the
stage record and its runs. The SQLite backend is in :mod:`.sqlite_store`,
the Redis backend for multi-worker crawls in :mod:`.redis_store`; where a
stage lives, and how it is locked, is a :class:`~.backends.StageBackend`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import islice
from operator import le
from pathlib import Path
from typing import Any


class RequestStatus(IntEnum):
    """Where one logical request stands in the ledger.

    "skipped" is not a stored status: a skipped request stays ``DONE`` and is
    counted in the ``skipped`` counter.
    """

    PENDING = 0
    DONE = 1
    FAILED = 2
    DROPPED = 3


class StageStatus:
    INITIALIZED = "initialized"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    RECOVERING = "recovering"


class CheckpointCorrupt(Exception):
    """The checkpoint file exists but cannot be read as a checkpoint."""


class CheckpointLocked(Exception):
    """Another process has this stage open."""

    def __init__(self, path: Path, pid: str):
        super().__init__(f"{path} is in use by process {pid or '(unknown)'}")
        self.pid = pid


class CheckpointTampered(Exception):
    """A stored request does not carry a valid signature: it is never unpickled."""

    def __init__(self, key: bytes, url: str):
        super().__init__(f"the stored request for {url} (key {key.hex()}) fails verification")
        self.key = key
        self.url = url


@dataclass
class NewRequest:
    """A request to add to the frontier as pending (ignored if its key is known)."""

    key: bytes
    url: str
    blob: bytes | None  # the serialized request; None for a StageTracker's item


@dataclass
class Settlement:
    """The final state of a request in this run."""

    key: bytes
    status: RequestStatus
    url: str
    http_status: int | None = None
    error: str | None = None
    blob: bytes | None = None  # kept for failed requests, so they can be retried
    attempts: int = 1  # downloads in this run, retries included
    info: dict[str, Any] | None = None  # what a StageTracker recorded with done(key, **info)


@dataclass
class CommitBatch:
    """Everything one checkpoint transaction makes durable, all or nothing."""

    new_requests: list[NewRequest] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    cursors: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    feed_offsets: dict[str, int] = field(default_factory=dict)  # path -> bytes committed
    state: dict[str, Any] = field(default_factory=dict)  # the package's own resumable state
    # leases on shared-queue requests this batch settles (Redis backend, scrapy-redis)
    released_leases: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.new_requests or self.settlements or self.cursors or self.counters
            or self.feed_offsets or self.state or self.released_leases
        )


    def requests_to_write(self) -> tuple[list[NewRequest], dict[bytes, str]]:
        """The new requests to store as pending, and the discovered URL of the others.

        A request discovered and finished within one commit interval (common:
        Scrapy fetches the newest requests first) is written once, by its
        settlement, with the URL it was discovered under (not a redirect's).
        """
        finished_now = {s.key for s in self.settlements if s.status != RequestStatus.FAILED}
        pending: list[NewRequest] = []
        discovered_url: dict[bytes, str] = {}
        for request in self.new_requests:
            if request.key in finished_now:
                discovered_url[request.key] = request.url
            else:
                pending.append(request)
        return pending, discovered_url


def statuses(*, settled: bool, include_failed: bool) -> tuple[RequestStatus, ...]:
    """Settled: never fetched again by a resume (failed too, unless retried).
    Not settled: what a resume restores (pending, and failed when retried)."""
    if settled:
        if include_failed:
            return RequestStatus.DONE, RequestStatus.FAILED, RequestStatus.DROPPED
        return RequestStatus.DONE, RequestStatus.DROPPED
    if include_failed:
        return RequestStatus.PENDING, RequestStatus.FAILED
    return (RequestStatus.PENDING,)


@dataclass(frozen=True)
class StageSummary:
    stage: str
    spider: str
    status: str
    created_at: float
    updated_at: float
    pending: int
    done: int
    failed: int
    dropped: int
    counters: dict[str, int]

    @classmethod
    def from_records(
        cls, meta: dict[str, str], counts: dict[int, int], counters: dict[str, int]
    ) -> StageSummary:
        """From a backend's stage record, its request counts by status, and its counters."""
        return cls(
            stage=meta["stage"],
            spider=meta["spider"],
            status=meta["status"],
            created_at=float(meta["created_at"]),
            updated_at=float(meta["updated_at"]),
            pending=counts.get(RequestStatus.PENDING, 0),
            done=counts.get(RequestStatus.DONE, 0),
            failed=counts.get(RequestStatus.FAILED, 0),
            dropped=counts.get(RequestStatus.DROPPED, 0),
            counters=counters,
        )

    @property
    def total(self) -> int:
        return self.pending + self.done + self.failed + self.dropped

    def describe(self, status: str | None = None) -> str:
        """One line for the log; ``status`` overrides the stored one (a stage being closed)."""
        age = max(0.0, time.time() - self.updated_at)
        updated = format_time(self.updated_at)
        return (
            f"status {status or self.status}, {self.done:,} done, {self.pending:,} pending, "
            f"{self.failed:,} failed, {self.dropped:,} dropped; last update {updated} "
            f"({format_age(age)} ago)"
        )


class KeyIndex:
    """Answers "is this key in that set?" (settled before this run, in the stored
    frontier) for millions of keys, exactly, in 8 bytes a key.

    A Python set of 20-byte keys costs about 90 bytes a key. This holds the
    first 8 bytes of each key as a sorted array of 64-bit integers and searches
    it by bisection; a prefix match is confirmed with the store.
    """

    def __init__(self, prefixes: array, confirm: Callable[[bytes], bool]):
        if not all(map(le, prefixes, islice(prefixes, 1, None))):
            prefixes = array("Q", sorted(prefixes))
        self.prefixes = prefixes
        self.confirm = confirm

    @staticmethod
    def prefix(key: bytes) -> int:
        return int.from_bytes(key[:8] if len(key) >= 8 else key.ljust(8, b"\0"), "big")

    def __len__(self) -> int:
        return len(self.prefixes)

    def __contains__(self, key: bytes) -> bool:
        prefixes = self.prefixes
        if not prefixes:
            return False
        value = self.prefix(key)
        index = bisect_left(prefixes, value)
        return index < len(prefixes) and prefixes[index] == value and self.confirm(key)


def describe_error(error: Any) -> str:
    """How an error is written in the ledger: ``ValueError: boom``. Takes an
    exception, a Twisted Failure (its ``value``) or a message."""
    if isinstance(error, str):
        return error
    value = getattr(error, "value", error) if not isinstance(error, BaseException) else error
    return f"{type(value).__name__}: {value}"


def backup_name(name: str, exists: Callable[[str], bool]) -> str:
    """``NAME.bak-DATE`` (``-2``, ``-3``... if taken): where a reset keeps what it replaces."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = f"{name}.bak-{stamp}"
    counter = 1
    while exists(backup):
        counter += 1
        backup = f"{name}.bak-{stamp}-{counter}"
    return backup


def format_time(timestamp: float | None) -> str:
    """``2026-11-23 05:03:49`` in local time, or ``-``."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: the largest whole unit."""
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class BaseCheckpointStore(ABC):
    """What the components need from a backend, in terms of the ledger."""

    @abstractmethod
    def initialize(self, stage: str, spider: str, state: dict[str, Any] | None = None) -> None:
        """Create an empty stage record, with its first ``state``, in one transaction."""

    @abstractmethod
    def summary(self) -> StageSummary: ...

    @abstractmethod
    def counters(self) -> dict[str, int]: ...

    @abstractmethod
    def set_status(self, status: str) -> None: ...

    @abstractmethod
    def begin_run(self, mode: str) -> int: ...

    @abstractmethod
    def end_run(self, run_id: int, reason: str) -> None: ...

    @abstractmethod
    def finished_index(self, *, include_failed: bool = True) -> KeyIndex:
        """Keys that are done or dropped (and failed, unless they are being retried):
        never fetched again by a resume."""

    @abstractmethod
    def is_finished(self, key: bytes, *, include_failed: bool = True) -> bool: ...

    @abstractmethod
    def frontier_index(self, *, include_failed: bool = False) -> KeyIndex:
        """Keys a resume restores: pending, and failed ones when they are retried."""

    @abstractmethod
    def is_pending(self, key: bytes, *, include_failed: bool = False) -> bool: ...

    @abstractmethod
    def claim(self, key: bytes, url: str) -> bool:
        """Record ``key`` as pending at once, unless the ledger knows it already
        (then False): how workers sharing a queue agree on who schedules a
        start request."""

    @abstractmethod
    def iter_pending(
        self, batch_size: int = 1000, *, include_failed: bool = False
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        """Stream the frontier as batches of ``(key, serialized request)``, oldest first:
        the requests stored when it is called, not those added while it streams.

        Raises CheckpointTampered for a request whose signature does not verify.
        """

    @abstractmethod
    def pending_keys(self) -> list[bytes]:
        """The key of every pending request, whether a copy of it is stored or not
        (on a shared scrapy-redis queue, the queue holds the copies)."""

    @abstractmethod
    def ledger_rows(
        self, status: RequestStatus | None = None, *, newest_first: bool = False, limit: int = -1
    ) -> Iterator[dict[str, Any]]:
        """Requests with their URL, status, HTTP status, error, attempts and timestamps."""

    @abstractmethod
    def runs(self) -> list[dict[str, Any]]:
        """The stage's runs: mode (fresh, resume, recover), start, end, close reason."""

    @abstractmethod
    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]: ...

    @abstractmethod
    def cursors(self) -> dict[str, Any]: ...

    @abstractmethod
    def feed_offsets(self) -> dict[str, int]:
        """Committed size of every feed file the stage writes, by absolute path."""

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @abstractmethod
    def commit(self, batch: CommitBatch) -> None:
        """Apply a whole batch atomically."""

    @abstractmethod
    def close(self) -> None: ...
