"""The store's two interfaces, and its errors.

Components talk to a :class:`BaseCheckpointStore` in terms of the ledger:
pending requests, settled requests, cursors, counters, feed offsets, the
stage record and its runs (the types are in ``records``). Where a stage lives,
and how it is locked, is a :class:`StageBackend`: a directory of SQLite files
(``sqlite/``), or a Redis server for multi-worker crawls (``redis/``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from twisted.python.failure import Failure

from scrapy_resume.store.records import CommitBatch, KeyIndex, RequestStatus, StageSummary

if TYPE_CHECKING:
    from scrapy_resume.store.copying import StageCopy


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


def describe_error(error: BaseException | Failure | str) -> str:
    """How an error is written in the ledger: ``ValueError: boom``. Takes an
    exception, a Twisted Failure (its ``value``: a Failure is itself a
    BaseException in recent Twisted) or a message."""
    if isinstance(error, str):
        return error
    value = error.value if isinstance(error, Failure) else error
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
    def progress(self) -> list[dict[str, Any]]:
        """Samples of the stage's counts, oldest first, one every few seconds of each
        run: at, run (its number), done, failed, dropped, pending, items."""

    @abstractmethod
    def check(self) -> list[str]:
        """What is wrong with the stored data, read only (``scrapy checkpoint verify``):
        its integrity, the status counts against the ledger, each stored request's
        signature. Empty when healthy."""

    @abstractmethod
    def export_copy(self) -> StageCopy:
        """The whole stage as plain data (``scrapy checkpoint migrate``); its stored
        requests verified, a forged one raising CheckpointTampered."""

    @abstractmethod
    def import_copy(self, copy: StageCopy) -> None:
        """Write a whole stage into this one, just created: its requests signed anew."""

    @abstractmethod
    def ledger(self) -> Iterator[tuple[bytes, RequestStatus, str]]: ...

    @abstractmethod
    def cursors(self) -> dict[str, Any]: ...

    @abstractmethod
    def feed_offsets(self) -> dict[str, int]:
        """Committed size of every feed file the stage writes, by the feed's key (its path
        relative to the checkpoint directory; an absolute path for older stages)."""

    @abstractmethod
    def feed_starts(self) -> dict[str, int]:
        """Where the stage's output begins in each feed file, by key (see CommitBatch);
        missing for feeds recorded by older versions."""

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @abstractmethod
    def commit(self, batch: CommitBatch) -> int | None:
        """Apply a whole batch atomically. On a shared queue: how many settlements
        were fenced off (their leases lost at the commit itself)."""

    @abstractmethod
    def close(self) -> None: ...


class Lock(Protocol):
    def acquire(self) -> None: ...  # raises CheckpointLocked
    def release(self) -> None: ...
    def held_by_another(self) -> str | None: ...


class StageBackend(ABC):
    kind: str
    #: can its stages be crawled through scrapy-redis (a queue shared by workers)?
    shares_queues = False

    @abstractmethod
    def location(self, stage: str) -> str:
        """Where the stage lives, for messages."""

    @abstractmethod
    def exists(self, stage: str) -> bool: ...

    @abstractmethod
    def open(self, stage: str, *, read_only: bool = False) -> BaseCheckpointStore:
        """An existing stage; ``read_only``: one that reading never changes, not even
        on disk (``scrapy checkpoint verify``)."""

    @abstractmethod
    def create(self, stage: str, owner: str, state: dict[str, Any]) -> BaseCheckpointStore:
        """A new stage, whole or not at all, with its first state (its configuration)."""

    @abstractmethod
    def lock(self, stage: str, *, shared: bool = False) -> Lock:
        """One process per stage; ``shared``: a worker's membership of a stage
        that several workers crawl together (scrapy-redis), on a shared backend."""

    @abstractmethod
    def move_aside(self, stage: str, also: Sequence[str] = ()) -> str:
        """Keep the stage as a backup under another name; returns where it went.
        ``also``: keys of the crawl kept outside the stage, on Redis (scrapy-redis's
        queue and dupefilter), that go aside with it; a SQLite stage has none."""

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
