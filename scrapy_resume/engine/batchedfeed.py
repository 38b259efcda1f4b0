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

from collections.abc import Callable
from typing import Protocol

from scrapy_resume.engine.feedbuffer import ExportedBytes, FeedBuffer
from scrapy_resume.engine.framing import Framing
from scrapy_resume.store.records import CommitBatch

#: The state entry that holds each batched feed's current batch.
STATE = "feed_batches"


class FeedWriter(Protocol):
    """What the Committer writes at each commit: a FeedBuffer, or a BatchedFeed."""

    backlog: bool

    def prepare(self, commit_start: Callable[..., None]) -> None: ...
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


class BatchedFeed:
    """The batch files of one batched feed (one FEEDS entry)."""

    def __init__(
        self, name: str, size: int, framing: Framing, open_batch: Callable[[int], FeedBuffer],
        batches: dict[str, dict], current: FeedBuffer | None = None,
    ):
        self.name = name  # the feed's URI template, as a key of ``batches``
        self.size = size
        self.framing = framing
        self.header = framing.header  # a CSV header: the first line the exporter writes
        self.trailer = framing.trailer  # a document's end, written into each batch file
        self.open_batch = open_batch  # batch number -> a FeedBuffer on its new file
        self.batches = batches  # every batched feed's current batch (the Committer's)
        entry = batches.get(name, {"batch": 0, "items": 0})
        self.batch_id, self.items = entry["batch"], entry["items"]
        self.current = current  # reopened by a resume, else None until the first item
        self.queue: list[bytes] = []

    @property
    def full(self) -> bool:
        return self.items >= self.size

    def prepare(self, commit_start: Callable[..., None]) -> None:
        """Before a commit: start the next batch file when records wait for one,
        committing where it starts (and that it is the current batch) first."""
        if not self.queue or (self.current is not None and not self.full):
            return
        if self.current is not None:
            self.current.close_file()
        self.batch_id, self.items = self.batch_id + 1, 0
        self.current = self.open_batch(self.batch_id)
        self.current.header = bytearray(self.header)
        entries = self._entry()
        commit_start(self.current, state={STATE: entries})
        self.batches.update(entries)

    @property
    def has_output(self) -> bool:
        return bool(self.queue) and self.current is not None and not self.full

    @property
    def backlog(self) -> bool:
        return bool(self.queue)

    def write_out(self, batch: CommitBatch, fsync: bool) -> None:
        assert self.current is not None
        room = self.size - self.items
        for record in self.queue[:room]:
            self.current.add_record(record)
        self.items += min(room, len(self.queue))
        del self.queue[:room]
        if self.full:  # finished for good: its end is committed with its last item
            self.current.outgoing += self.trailer
            self.current.ended = True
        self.current.write_out(batch, fsync)
        batch.state[STATE] = self._entry()

    def _entry(self) -> dict[str, dict]:
        assert self.current is not None
        entry = {"batch": self.batch_id, "items": self.items, "file": self.current.key,
                 "size": self.size}
        return {**self.batches, self.name: entry}

    def committed(self, batch: CommitBatch) -> None:
        if self.current is not None:
            self.current.committed(batch)
        if STATE in batch.state:
            self.batches.update(batch.state[STATE])

    def close_file(self, fsync: bool = False) -> None:
        """After the last commit: the current batch gets its end (unless full:
        it has it), which a resume cuts off to fill the batch on."""
        if self.current is not None:
            self.current.close_file(fsync)

    def abandon(self) -> None:
        if self.current is not None:
            self.current.abandon()
