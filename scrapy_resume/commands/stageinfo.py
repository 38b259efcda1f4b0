"""What ``scrapy checkpoint`` reads from a stage, as plain data, and a text table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scrapy_resume.components.progress import format_duration
from scrapy_resume.lifecycle.validation import shown_arguments
from scrapy_resume.store.base import (
    BaseCheckpointStore,
    CheckpointCorrupt,
    CheckpointLocked,
    StageBackend,
)
from scrapy_resume.store.records import StageStatus


class CommandError(Exception):
    """A clear message for the user, and exit code 1."""


def stage_names(backend: StageBackend) -> list[str]:
    names = backend.stages()
    if not names:
        raise CommandError(
            f"No checkpoints in {backend.where()} (use --dir PATH or --backend URL)."
        )
    return names


def open_store(backend: StageBackend, stage: str) -> BaseCheckpointStore:
    try:
        return backend.open(stage)
    except CheckpointCorrupt as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def holding_stage(backend: StageBackend, stage: str, why: str = "") -> Iterator[None]:
    """Hold the stage's lock while a command changes or copies it: refused while a
    process crawls it, or, for a shared stage, while live workers do (they hold no
    lock). ``why`` ends the message."""
    lock = backend.lock(stage)
    try:
        lock.acquire()
    except CheckpointLocked as exc:
        raise CommandError(
            f"Stage {stage} is being crawled by process {exc.pid}: stop it first{why}."
        ) from None
    try:
        workers = [w["worker"] for w in backend.workers(stage).get("workers", [])]
        if workers:
            raise CommandError(
                f"Stage {stage} is being crawled by {', '.join(workers)}: stop them first{why}."
            )
        yield
    finally:
        lock.release()


def owner_label(owner: str) -> str:
    """``spider discovery``, or ``StageTracker`` for a tracker's stage."""
    return owner.strip("()") if owner.startswith("(") else f"spider {owner}"


def stage_info(backend: StageBackend, stage: str) -> dict[str, Any]:
    """What one stage holds, as plain data (the --json output of list)."""
    store = open_store(backend, stage)
    try:
        summary = store.summary()
        samples = store.progress()
    except CheckpointCorrupt as exc:
        return {"stage": stage, "status": "corrupt", "error": str(exc)}
    finally:
        store.close()
    status = summary.status
    if status in (StageStatus.RUNNING, StageStatus.RECOVERING):
        if not backend.holders(stage):
            status = "crashed"  # nobody runs it: the next resume recovers it
    ok_or_failed = summary.done + summary.failed
    settled = ok_or_failed + summary.dropped
    live = status in (StageStatus.RUNNING, StageStatus.RECOVERING)
    rate = recent_rate(samples)
    return {
        "stage": summary.stage,
        "spider": summary.spider,
        "status": status,
        "done": summary.done,
        "pending": summary.pending,
        "failed": summary.failed,
        "dropped": summary.dropped,
        "total": summary.total,
        "percent_done": round(100 * summary.done / summary.total, 1) if summary.total else 0.0,
        # how far the stage has got, and how well: two different things
        "percent_settled": round(100 * settled / summary.total, 1) if summary.total else 0.0,
        "success_rate": round(100 * summary.done / ok_or_failed, 1) if ok_or_failed else None,
        # requests settled per second, over the last minute of the last run's samples
        "rate": None if rate is None else round(rate, 2),
        "eta_seconds": round(summary.pending / rate) if live and rate else None,
        "items": summary.counters.get("items", 0),
        "runs": summary.counters.get("runs", 0),
        "updated_at": summary.updated_at,
        "age_seconds": round(time.time() - summary.updated_at, 1),
    }


def recent_rate(samples: list[dict[str, Any]], window: float = 60.0) -> float | None:
    """Requests settled per second in the last run, over its last ``window``
    seconds of samples; None with fewer than two samples of it."""
    if not samples:
        return None
    last = samples[-1]
    recent = [s for s in samples if s["run"] == last["run"] and s["at"] >= last["at"] - window]
    first = recent[0]
    if last["at"] <= first["at"]:
        return None
    return (settled(last) - settled(first)) / (last["at"] - first["at"])


def settled(sample: dict[str, Any]) -> int:
    return sample["done"] + sample["failed"] + sample["dropped"]


def unfinished_run(info: dict[str, Any], number: int) -> str:
    """A run with no close reason: the stage's live run, or one that crashed."""
    last = number == len(info["runs"])
    live = info["status"] in (StageStatus.RUNNING, StageStatus.RECOVERING)
    return "(running)" if last and live else "(crashed)"


def percent(value: float | None) -> str | None:
    return None if value is None else f"{value}%"


def report_line(info: dict[str, Any]) -> str:
    """``discovery: running, 5,000 done, 6,000 pending, 12 failed: 45.5% settled,
    ok 99.8%, 42.3 req/s, ETA 2m24s`` (a rate and an ETA for a running stage)."""
    line = (f"{info['stage']}: {info['status']}, {info['done']:,} done, "
            f"{info['pending']:,} pending, {info['failed']:,} failed: "
            f"{info['percent_settled']}% settled, ok {percent(info['success_rate']) or '-'}")
    if info["status"] in (StageStatus.RUNNING, StageStatus.RECOVERING):
        rate, eta = info["rate"], info["eta_seconds"]
        line += f", {rate:,.1f} req/s" if rate is not None else ", rate not known yet"
        line += f", ETA {format_duration(eta)}" if eta is not None else ""
    return line


def stage_commands(info: dict[str, Any], state: dict[str, Any]) -> dict[str, str]:
    """The commands to resume the stage, and to retry its failures if it has any."""
    recorded = state.get("commands", {})
    commands = {"resume": recorded.get(
        "resume", f"scrapy crawl {info['spider']} -s CHECKPOINT_RESUME=1")}
    if info["failed"]:
        commands["retry"] = recorded.get(
            "retry", commands["resume"] + " -s CHECKPOINT_RETRY_FAILED=1")
    return commands


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """A stage's recorded configuration, with secret arguments hidden."""
    if "arguments" not in config:
        return config
    return {**config, "arguments": shown_arguments(config["arguments"])}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
