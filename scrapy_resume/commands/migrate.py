"""``scrapy checkpoint migrate STAGE --to redis://HOST:PORT/DB`` (or ``--to DIR``):
copy a stage to another backend, whole, and check the copy before saying so.

The source is locked while it is read (a stage being crawled is refused) and
left as it was. The copy gets the ledger with its timestamps, the frontier
(each request verified with the source's secret, signed with the target's),
cursors, counters, feed offsets (their keys renamed for the target's
directory), state, runs and progress samples. It is then compared with the
source (counts, counters, cursors, feed offsets, runs, the pending keys,
every stored request readable) and checked (``verify``); a copy that differs
is removed, and the error says why.
"""

from __future__ import annotations

import os
from typing import Any

from scrapy_resume.commands.stageinfo import CommandError, holding_stage
from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.store.base import (
    BaseCheckpointStore,
    CheckpointTampered,
    StageBackend,
)


def migrate_stage(source: StageBackend, stage: str, target: StageBackend) -> dict[str, Any]:
    if target.exists(stage):
        raise CommandError(f"Stage {stage} exists in {target.where()} already: remove it "
                           f"there first (scrapy checkpoint reset {stage} --backend/--dir ...)")
    with holding_stage(source, stage, " (a copy of a stage that moves would be wrong)"):
        original = source.open(stage, read_only=True)
        try:
            _refuse_requests_kept_outside(original, stage)
            return _copy(original, source, stage, target)
        finally:
            original.close()


def _refuse_requests_kept_outside(original: BaseCheckpointStore, stage: str) -> None:
    """A stage crawled through scrapy-redis keeps its pending requests in
    scrapy-redis's queue, not in the stage: its copy would hold them pending, with
    nothing to fetch them from."""
    pending = original.summary().pending
    outside = pending - sum(len(batch) for batch in original.iter_pending())
    if outside > 0:
        raise CommandError(
            f"Stage {stage} has {outside:,} pending request(s) that are not in the "
            f"checkpoint but in scrapy-redis's shared queue: a copy could not fetch them. "
            f"Finish the stage with its workers first (a completed stage copies whole)."
        )


def _copy(original: BaseCheckpointStore, source: StageBackend, stage: str,
          target: StageBackend) -> dict[str, Any]:
    data = original.export_copy()
    renamed = FeedKeys(str(source.directory), str(target.directory))
    data.feed_offsets = renamed.of(data.feed_offsets)
    data.feed_starts = renamed.of(data.feed_starts)
    copy = target.create(stage, data.meta["spider"], {})
    try:
        try:
            copy.import_copy(data)
        except CheckpointTampered as exc:
            raise CommandError(f"Not copied: {exc} (scrapy checkpoint verify {stage})") from None
        differences = compare(original, copy, renamed) + copy.check()
    except BaseException:
        copy.close()
        target.remove(stage)
        raise
    copy.close()
    if differences:
        target.remove(stage)
        raise CommandError("The copy differs from the stage, so it was removed: "
                           + "; ".join(differences))
    summary = original.summary()
    return {"stage": stage, "from": source.location(stage), "to": target.location(stage),
            "requests": summary.total, "pending": summary.pending}


class FeedKeys:
    """A feed's key is its path relative to the checkpoint directory: the same file
    has another key beside another directory."""

    def __init__(self, source_directory: str, target_directory: str):
        self.source, self.target = FeedFiles(source_directory), FeedFiles(target_directory)

    def of(self, offsets: dict[str, int]) -> dict[str, int]:
        return {self.target.key(self.source.path(key)): value for key, value in offsets.items()}


def compare(original: BaseCheckpointStore, copy: BaseCheckpointStore,
            renamed: FeedKeys) -> list[str]:
    before, after = original.summary(), copy.summary()
    found = []
    for field in ("status", "pending", "done", "failed", "dropped", "counters"):
        if getattr(before, field) != getattr(after, field):
            found.append(f"{field}: {getattr(before, field)} then, {getattr(after, field)} now")
    for name, read in (("cursors", lambda s: s.cursors()), ("runs", lambda s: s.runs()),
                       ("state", lambda s: s.state()),
                       ("progress samples", lambda s: len(s.progress()))):
        if read(original) != read(copy):
            found.append(f"{name} differ")
    if renamed.of(original.feed_offsets()) != copy.feed_offsets():
        found.append("feed offsets differ")
    if set(original.pending_keys()) != set(copy.pending_keys()):
        found.append("pending requests differ")
    stored = [sum(len(batch) for batch in store.iter_pending(include_failed=True))
              for store in (original, copy)]
    if stored[0] != stored[1]:
        found.append(f"stored requests: {stored[0]:,} then, {stored[1]:,} now")
    return found


def where(target: str) -> tuple[str, str | None]:
    """``--to``: (backend, directory): a Redis URL, or a directory of SQLite files."""
    if target.startswith(("redis://", "rediss://", "unix://")):
        return target, None
    return "", os.path.abspath(target)


def migrated_text(result: dict[str, Any]) -> str:
    return (f"Copied stage {result['stage']} ({result['requests']:,} requests, "
            f"{result['pending']:,} pending) from {result['from']} to {result['to']}, and "
            f"checked the copy. The original is unchanged. Resume from the copy with "
            f"{result['resume_with']} -s CHECKPOINT_RESUME=1")
