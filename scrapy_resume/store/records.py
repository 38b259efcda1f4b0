"""The types the store speaks in: request and stage statuses, what a commit
carries, a stage's summary, and the compact key index a resume checks against."""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import islice
from operator import le
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
    # the shared-queue lease it was fetched under: the commit settles it only if this
    # worker still holds the lease (a fencing token, checked in the commit script)
    lease: str | None = None


@dataclass
class CommitBatch:
    """Everything one checkpoint transaction makes durable, all or nothing."""

    new_requests: list[NewRequest] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    cursors: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    feed_offsets: dict[str, int] = field(default_factory=dict)  # path -> bytes committed
    # path -> where this stage's output begins in the file (recorded once, when the stage
    # first opens the feed): a CSV header or a JSON/XML document's start is written there
    feed_starts: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # the package's own resumable state
    # leases on shared-queue requests this batch settles (Redis backend, scrapy-redis)
    released_leases: list[str] = field(default_factory=list)
    worker: str = ""  # the worker committing, on a shared queue: whose leases count
    # also append a sample of the stage's counts, as this batch leaves them (progress())
    progress: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.new_requests or self.settlements or self.cursors or self.counters
            or self.feed_offsets or self.feed_starts or self.state or self.released_leases
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
