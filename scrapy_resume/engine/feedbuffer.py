"""The feed byte buffer: exported bytes wait in memory until their request is done.

See components/feedstorage.py for how a feed becomes exactly-once.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any


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


class FeedBuffer(io.RawIOBase):
    """What the exporter writes into: bytes wait here until their request is done.

    A CSV header belongs to no item: it is the first line the exporter writes,
    and it goes to the file first (``header="write"``), or is dropped when the
    file already has it (``header="skip"``).
    """

    def __init__(
        self, path: str, key: str, file: IO[bytes], offset: int, *, header: str | None = None
    ):
        super().__init__()
        self.path = path
        self.key = key  # its name in the checkpoint (see FeedFiles)
        self.file = file
        self.committed_offset = offset
        self.header = header
        self.preamble = bytearray()  # the header, written at the next commit before any item
        self.staged = bytearray()  # exported, not yet claimed by a request
        self.outgoing = bytearray()  # claimed by done requests, written at the next commit

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        data = bytes(data)
        if self.header is not None:
            end = data.find(b"\n")
            head, data = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
            if self.header == "write":
                self.preamble += head
            if end >= 0:
                self.header = None
        self.staged += data
        return size

    def take(self) -> bytes:
        data = bytes(self.staged)
        self.staged.clear()
        return data

    @property
    def has_output(self) -> bool:
        return bool(self.preamble or self.outgoing)

    def write_out(self, fsync: bool) -> int:
        """Append the header and the claimed bytes to the file; return the size to commit."""
        data = self.preamble + self.outgoing
        if data:
            self.file.write(data)
            self.file.flush()
            if fsync:
                os.fsync(self.file.fileno())
        return self.committed_offset + len(data)

    def committed(self, offset: int) -> None:
        self.committed_offset = offset
        self.preamble.clear()
        self.outgoing.clear()

    def close_file(self) -> None:
        """After the last commit: write whatever is left (a format's trailer) and close."""
        if not self.file.closed:
            self.file.write(self.preamble + self.outgoing + self.staged)
            self.file.close()

    def abandon(self) -> None:
        """Close the file without writing what was not committed (a commit failed)."""
        if not self.file.closed:
            self.file.close()
