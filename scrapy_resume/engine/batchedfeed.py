"""Batched feeds (``FEED_EXPORT_BATCH_ITEM_COUNT``), exactly-once: batch files
of exactly N items, filled in commit order, numbered on across resumes.

Scrapy starts a new batch every N items it exports; its batch numbering
restarts at 1 in every run and its batches hold what was exported, not what
was committed. So the batch files are ours: Scrapy's batch slots export into
:class:`BatchView` objects, whose records queue in the :class:`BatchedFeed`
of their feed, and each commit appends them to the current batch file. The
current batch (its number, how many items it has, its file) is committed with
them. A full batch is finished at once (a document's closing bracket or tag
is committed with its last item) and never written again; the next one is
started by a commit of its own that records where it starts, before its first
byte. A resume cuts the current batch back to its last commit and fills it on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from scrapy_resume.engine.feedbuffer import ExportedBytes, FeedBuffer
from scrapy_resume.engine.framing import Framing
from scrapy_resume.store.records import CommitBatch

#: The state entry that holds each batched feed's current batch.
STATE = "feed_batches"


class FeedWriter(Protocol):
    """What the Committer writes at each commit: a FeedBuffer, or a BatchedFeed."""

    def prepare(self, commit_starts: Callable[..., None]) -> None: ...
    @property
    def has_output(self) -> bool: ...
    def write_out(self, batch: CommitBatch, fsync: bool) -> None: ...
    def committed(self, batch: CommitBatch) -> None: ...
    def close_file(self, fsync: bool = False) -> None: ...
    def abandon(self) -> None: ...


class BatchView(ExportedBytes):
    """What one of Scrapy's batch slots exports into. Its exporter's header and
    trailer are not the batch files' (those are written by the BatchedFeed); its
    records go to the feed's queue."""

    def __init__(self, feed: BatchedFeed):
        super().__init__(feed.framing)
        self.feed = feed

    def add_record(self, record: bytes) -> None:
        if not self.feed.header and self.header:
            self.feed.header = bytes(self.header)  # a CSV header line, for every batch file
        self.feed.queue.append(record)

    def exporter_finished(self) -> bytes:
        self.staged.clear()  # its trailer
        return b""


class BatchFiles(Protocol):
    """How a batched feed's files are named and opened (the Scrapy side knows)."""

    def path(self, batch_id: int) -> str: ...  # its path, named as Scrapy names batches
    def key(self, path: str) -> str: ...  # its name in the stage
    def start(self, path: str) -> int: ...  # where a new batch file will begin
    def open(self, key: str, offset: int) -> FeedBuffer: ...  # cut back to offset
    def announced(self, keys: list[str]) -> dict: ...  # state to commit with new files
    def finished(self, buffer: FeedBuffer) -> None: ...  # committed, never written again


class BatchedFeed:
    """The batch files of one batched feed (one FEEDS entry).

    Every record waiting at a commit is written by that commit, into as many
    batch files as it takes: the write-ahead rule holds (a request is done in
    the same transaction that makes its items durable). The new batch files a
    commit needs are announced first, by a commit of their own that records
    where each begins (and that they come next), before any is created: a kill
    leaves no batch file the stage does not know, and a resume cuts each one
    back and fills them in order.
    """

    def __init__(
        self, name: str, size: int, framing: Framing, files: BatchFiles,
        batches: dict[str, dict], current: FeedBuffer | None = None,
        upcoming: list[FeedBuffer] | None = None,
    ):
        self.name = name  # the feed's URI template, as a key of ``batches``
        self.size = size
        self.framing = framing
        self.header = framing.header  # a CSV header: the first line the exporter writes
        self.trailer = framing.trailer  # a document's end, written into each batch file
        self.files = files
        self.batches = batches  # every batched feed's current batch (the Committer's)
        entry = batches.get(name, {"batch": 0, "items": 0})
        self.batch_id, self.items = entry["batch"], entry["items"]
        self.current = current  # reopened by a resume, else None until the first item
        self.upcoming = upcoming or []  # announced batch files, next first
        self.queue: list[bytes] = []
        self.written: list[FeedBuffer] = []  # by the commit under way
        self.finished: list[FeedBuffer] = []  # filled by it: closed once it is committed

    @property
    def full(self) -> bool:
        return self.items >= self.size

    def prepare(self, commit_starts: Callable[..., None]) -> None:
        """Before a commit: announce the new batch files its records need."""
        room = self.size - self.items if self.current is not None else 0
        needed = -(-max(0, len(self.queue) - room) // self.size)  # whole batch files
        first = self.batch_id + len(self.upcoming) + 1
        paths = [self.files.path(n) for n in range(first, self.batch_id + needed + 1)]
        if not paths:
            return
        starts = {self.files.key(path): self.files.start(path) for path in paths}
        entries = self._entry(upcoming=[*(b.key for b in self.upcoming), *starts])
        commit_starts(starts, state={STATE: entries, **self.files.announced(list(starts))})
        self.batches.update(entries)
        self.upcoming += [self.files.open(key, start) for key, start in starts.items()]

    @property
    def has_output(self) -> bool:
        return bool(self.queue)

    def write_out(self, batch: CommitBatch, fsync: bool) -> None:
        while self.queue:
            if self.current is None or self.full:
                if self.current is not None:
                    self.finished.append(self.current)
                self.current = self.upcoming.pop(0)
                self.batch_id, self.items = self.batch_id + 1, 0
            if self.current.header_pending:  # (a file reopened before its first item too)
                self.current.header = bytearray(self.header)
            room = self.size - self.items
            for record in self.queue[:room]:
                self.current.add_record(record)
            self.items += min(room, len(self.queue))
            del self.queue[:room]
            if self.full:  # finished for good: its end is committed with its last item
                self.current.outgoing += self.trailer
                self.current.ended = True
            self.current.write_out(batch, fsync)
            self.written.append(self.current)
        batch.state[STATE] = self._entry()

    def _entry(self, upcoming: list[str] | None = None) -> dict[str, dict]:
        entry = {
            "batch": self.batch_id, "items": self.items, "size": self.size,
            "file": self.current.key if self.current is not None else None,
            "upcoming": [b.key for b in self.upcoming] if upcoming is None else upcoming,
        }
        return {**self.batches, self.name: entry}

    def committed(self, batch: CommitBatch) -> None:
        for buffer in self.written:
            buffer.committed(batch)
        for buffer in self.finished:
            buffer.close_file()  # (its end is in: nothing more is written)
            self.files.finished(buffer)
        if self.current is not None and self.full:
            self.files.finished(self.current)  # (the next record starts a new batch)
        self.written, self.finished = [], []
        if STATE in batch.state:
            self.batches.update(batch.state[STATE])

    def close_file(self, fsync: bool = False) -> None:
        """After the last commit: the current batch gets its end (unless full:
        it has it), which a resume cuts off to fill the batch on. Announced
        files that no record came to are removed if they are empty."""
        if self.current is not None:
            self.current.close_file(fsync)
        for buffer in self.upcoming:
            buffer.abandon()  # (nothing was written to it)
            if os.path.getsize(buffer.path) == 0:
                os.remove(buffer.path)

    def abandon(self) -> None:
        for buffer in [self.current, *self.upcoming, *self.finished]:
            if buffer is not None:
                buffer.abandon()
