"""A whole stage as plain data, to copy it to another backend (``scrapy checkpoint
migrate``): its record, every ledger row with its stored request (verified, not
signed: the target signs it with its own secret), cursors, counters, feed
offsets, state, runs and progress samples."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

CHUNK = 5000  # ledger rows read and written at a time


class LedgerRow(NamedTuple):
    key: bytes
    seq: int
    status: int
    url: str
    http_status: int | None
    error: str | None
    attempts: int
    created_at: int
    updated_at: int
    info: str | None  # JSON, as stored
    request: bytes | None  # the serialized request of a pending or failed one, unsigned


@dataclass
class StageCopy:
    meta: dict[str, str]  # stage, spider, status, created_at, updated_at
    rows: Iterator[list[LedgerRow]]  # in discovery order, CHUNK at a time
    cursors: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    feed_offsets: dict[str, int] = field(default_factory=dict)  # by the feed's key
    feed_starts: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)


def copy_fields(store: Any, meta: dict[str, str], rows: Iterator[list[LedgerRow]]) -> StageCopy:
    """The parts every backend reads the same way, through the store's interface."""
    return StageCopy(meta=meta, rows=rows, cursors=store.cursors(), counters=store.counters(),
                     feed_offsets=store.feed_offsets(), feed_starts=store.feed_starts(),
                     state=store.state(), runs=store.runs(), progress=store.progress())
