"""``scrapy checkpoint verify [STAGE|all]``: is a stage healthy? It reads, and
never writes (a SQLite stage is opened read-only: not even a WAL checkpoint;
only SQLite's ``-shm`` index of a crashed run's WAL is rebuilt, as by any reader).

Checked: the stage file's own integrity, the status counts against the
ledger, every stored request's signature (``BaseCheckpointStore.check``),
and each feed file against its committed size: a resume cuts what lies past
it (the output of a killed run's last moments), but a file shorter than it,
or one whose committed part no longer ends a line (for line formats), was
truncated or changed since.
"""

from __future__ import annotations

import os
from typing import Any

from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.store.base import CheckpointCorrupt, StageBackend

#: Formats whose records end with a newline: a committed size ends a record.
LINE_FORMATS = (".jsonl", ".jl", ".csv")

WHAT_TO_DO = (
    "Nothing was changed. Restore the damaged file from a backup, or start the stage over "
    "with `scrapy checkpoint reset {stage}` (a backup of it is kept)."
)


def verify_stage(backend: StageBackend, stage: str, directory: str) -> dict[str, Any]:
    """``{"stage", "healthy", "problems", "notes", "what_to_do"}`` of one stage."""
    problems: list[str] = []
    notes: list[str] = []
    try:
        store = backend.open(stage, read_only=True)
    except CheckpointCorrupt as exc:
        problems.append(f"the stage cannot be read: {exc}")
    else:
        try:
            problems += store.check()
            feeds = FeedFiles(directory)
            for key, offset in sorted(store.feed_offsets().items()):
                start = store.feed_starts().get(key, 0)
                found, note = feed_problem(feeds.path(key), offset, start)
                problems += found
                notes += note
        except CheckpointCorrupt as exc:
            problems.append(f"the stage cannot be read: {exc}")
        finally:
            store.close()
    leases = backend.workers(stage).get("leases")
    if leases and leases["outstanding"]:
        notes.append(f"{leases['outstanding']:,} requests leased to workers "
                     f"({leases['expired']:,} leases expired: the next worker to look takes "
                     f"them back)")
    return {"stage": stage, "healthy": not problems, "problems": problems, "notes": notes,
            "what_to_do": WHAT_TO_DO.format(stage=stage) if problems else None}


def feed_problem(path: str, committed: int, start: int) -> tuple[list[str], list[str]]:
    """(problems, notes) of one feed file that the stage committed ``committed``
    bytes of (its own output beginning at ``start``)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        if committed > start:
            return [f"feed {path}: missing, and {committed:,} bytes of it were committed"], []
        return [], []
    if size < committed:
        return [f"feed {path}: {size:,} bytes, shorter than the {committed:,} committed: "
                f"it was truncated or changed"], []
    if committed > start and path.endswith(LINE_FORMATS):
        with open(path, "rb") as file:
            file.seek(committed - 1)
            if file.read(1) != b"\n":
                return [f"feed {path}: its committed {committed:,} bytes no longer end a "
                        f"line: it was changed"], []
    if size > committed:
        return [], [f"feed {path}: {size - committed:,} bytes past the last commit (a run "
                    f"stopped before committing them): the next resume cuts them"]
    return [], []


def verify_text(result: dict[str, Any]) -> str:
    if result["healthy"]:
        lines = [f"Stage {result['stage']}: healthy"]
    else:
        lines = [f"Stage {result['stage']}: {len(result['problems'])} problem(s)"]
        lines += [f"  - {problem}" for problem in result["problems"]]
    lines += [f"  note: {note}" for note in result["notes"]]
    if result["what_to_do"]:
        lines.append(f"  {result['what_to_do']}")
    return "\n".join(lines)
