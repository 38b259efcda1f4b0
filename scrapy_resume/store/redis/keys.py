"""The names of one stage's Redis keys: ``scrapy_resume:STAGE:NAME``."""

from __future__ import annotations

NAMESPACE = "scrapy_resume"
#: beside scrapy-redis's dupefilter set, SharedDupeFilter's hash of each worker's last add
CALLS_SUFFIX = ":calls"


class StageKeys:
    """A stage's key names, as attributes. A misspelt name is an AttributeError,
    never a new key."""

    #: every key of the stage but its lock and leases
    DATA = ("meta", "status", "record", "frontier", "blobs", "counts", "counters", "cursors",
            "feeds", "feed_starts", "state", "runs", "workers", "progress", "applied")
    #: the lease keys, in the order the Lua scripts take them: expiry (a sorted
    #: set), then the hashes of each lease's queued request, its score in the
    #: queue, its owner and its queue
    LEASES = ("lease_expiry", "lease_request", "lease_score", "lease_owner", "lease_queue")

    __slots__ = ("stage", "lock", *DATA, *LEASES)

    stage: str
    lock: str
    meta: str
    status: str
    record: str
    frontier: str
    blobs: str
    counts: str
    counters: str
    cursors: str
    feeds: str
    feed_starts: str
    state: str
    runs: str
    workers: str
    progress: str
    applied: str  # each writer's last commit, claim, run and pop (see lua/commit.lua)
    lease_expiry: str
    lease_request: str
    lease_score: str
    lease_owner: str
    lease_queue: str

    def __init__(self, stage: str):
        self.stage = stage
        for name in ("lock", *self.DATA, *self.LEASES):
            setattr(self, name, f"{NAMESPACE}:{stage}:{name}")

    def leases(self) -> list[str]:
        return [getattr(self, name) for name in self.LEASES]

    def data(self) -> list[str]:
        """Every key of the stage but its lock (a reset keeps the lock it holds)."""
        return [getattr(self, name) for name in self.DATA] + self.leases()
