"""The feed byte buffer: exported bytes wait in memory until their request is done.

See components/feedstorage.py for how a feed becomes exactly-once.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import IO, Any

from scrapy_resume.engine.framing import RECORDS, Framing
from scrapy_resume.store.records import CommitBatch


class DiscardedFeed(io.RawIOBase):
    """What a run that does not hold its stage exports into: nothing reaches a file.

    A refused run (the stage is locked by another process, exists, is completed,
    cannot be opened...) must leave the feed as it is; plain Scrapy would open
    it at close to store an empty feed, truncating it with ``-O``.
    """

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class ExportedBytes(io.RawIOBase):
    """The exporter's side of a feed: what it writes, one item at a time.

    A header belongs to no item: it is the first thing the exporter writes,
    and is taken off (``header``) for the file to write it once. Each item's
    bytes are then one record, taken by its request without its separator:
    records reach the file in commit order, not export order, so the file puts
    the separator back in front of every record but its first.
    """

    def __init__(self, framing: Framing):
        super().__init__()
        self.framing = framing
        self.in_header = framing.kind != "records"
        self.header_left = len(framing.header)  # a document's header bytes still to come
        self.header = bytearray()  # the header, as the exporter wrote it
        self.staged = bytearray()  # exported, not yet claimed by a request
        self.exported = 0  # records the exporter wrote

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        data = bytes(data)
        if self.in_header:
            data = self._header_from(data)
        self.staged += data
        return size

    def _header_from(self, data: bytes) -> bytes:
        """Take the exporter's header off the front of ``data``; return the rest."""
        if self.framing.is_document:
            head, data = data[: self.header_left], data[self.header_left :]
            self.header_left -= len(head)
            finished = self.header_left == 0
        else:  # CSV: the first line
            end = data.find(b"\n")
            head, data = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
            finished = end >= 0
        self.header += head
        if finished:
            self.in_header = False
        return data

    def take(self) -> bytes:
        """The bytes of the item just exported: one record, without its separator."""
        data = bytes(self.staged)
        self.staged.clear()
        separator = self.framing.separator
        if separator and self.exported and data.startswith(separator):
            data = data[len(separator) :]
        self.exported += 1
        return data

    def add_record(self, record: bytes) -> None:
        raise NotImplementedError


class FeedBuffer(ExportedBytes):
    """One feed file, written through the checkpoint: bytes wait here until
    their request is done, and reach the file at the commit that marks it so.

    The header goes to the file with the first records, unless the file holds
    this stage's output already (``begun``: a resume). A document's trailer
    is written when the file closes, after the last commit, and never
    committed: a resume cuts it off and continues the document.
    """

    def __init__(
        self, path: str, key: str, file: IO[bytes], offset: int, framing: Framing = RECORDS,
        *, begun: bool = False, compress: Callable[[bytes], bytes] | None = None,
    ):
        super().__init__(framing)
        self.path = path
        self.key = key  # its name in the checkpoint (see FeedFiles)
        self.file = file
        self.committed_offset = offset
        # a compressed feed: each write is one whole compressed stream, so the file can
        # be cut back to any commit (concatenated streams read back as one)
        self.compress = compress
        self.has_records = begun  # in the file, or on their way to it
        self.header_pending = not begun
        self.outgoing = bytearray()  # claimed by done requests, written at the next commit
        self.records_committed = begun  # has_records as the last commit left it
        self.ended = False  # its document's end is in the file, committed (a full batch)
        self.last_commit_done = False

    def add_record(self, record: bytes) -> None:
        """A done request's record: written at the next commit."""
        if self.has_records:
            self.outgoing += self.framing.separator
        self.outgoing += record
        self.has_records = True

    # what the Committer calls (a BatchedFeed answers the same)

    def prepare(self, commit_starts: Any) -> None:
        """Before a commit: nothing to announce (see BatchedFeed)."""

    @property
    def has_output(self) -> bool:
        return bool(self.outgoing)

    def write_out(self, batch: CommitBatch, fsync: bool) -> None:
        """Append the header and the claimed bytes to the file; the batch commits its size."""
        head = self.header if self.header_pending else b""
        data = self._encoded(head + self.outgoing)
        if data:
            self.file.write(data)
            self.file.flush()
            if fsync:
                os.fsync(self.file.fileno())
        batch.feed_offsets[self.key] = self.committed_offset + len(data)

    def committed(self, batch: CommitBatch) -> None:
        if self.key in batch.feed_offsets:
            self.committed_offset = batch.feed_offsets[self.key]
            self.header_pending = False
            self.outgoing.clear()
            self.records_committed = self.has_records

    def back_out(self) -> None:
        """The commit was called off after its bytes were written (on a shared queue,
        a lease lost under it): the file ends at its committed size again."""
        self.file.flush()
        self.file.truncate(self.committed_offset)
        self.outgoing.clear()
        self.has_records = self.records_committed

    def exporter_finished(self) -> bytes:
        """The exporter is done with this file. A document's trailer is dropped:
        the file gets its framing's own when it closes, which may come first (a
        stage marked completed must not wait for Scrapy's feed exporter). What a
        record format wrote after its last record is returned, to be committed
        like an item's bytes."""
        rest = bytes(self.staged)
        self.staged.clear()
        return b"" if self.framing.is_document else rest

    def close_file(self, fsync: bool = False) -> None:
        """After the last commit: write what is left, a document's end, and close."""
        self.last_commit_done = True
        if self.file.closed:
            return
        head = self.header if self.header_pending else b""
        end = self.framing.trailer if self.framing.is_document and not self.ended else b""
        rest = b"" if self.framing.is_document else self.staged
        self.file.write(self._encoded(head + self.outgoing + rest + end))
        self.file.flush()
        if fsync:
            os.fsync(self.file.fileno())
        self.file.close()

    def _encoded(self, data: bytes | bytearray) -> bytes:
        if not data or self.compress is None:
            return bytes(data)
        return self.compress(bytes(data))

    def abandon(self) -> None:
        """Close the file without writing what was not committed (a commit failed)."""
        self.last_commit_done = False
        if not self.file.closed:
            self.file.close()
