"""``scrapy checkpoint reset``: a stage moved aside, its feed files first, so that
the next crawl starts over (as CHECKPOINT_RESET does at a crawl's start)."""

from __future__ import annotations

from typing import Any

from scrapy_resume.commands.stageinfo import holding_stage, stage_info
from scrapy_resume.components.queue import scrapy_redis_keys, uses_shared_queue
from scrapy_resume.engine.feedfiles import FeedFiles
from scrapy_resume.lifecycle.stage import feed_offsets_if_readable
from scrapy_resume.store.base import StageBackend


def scrapy_redis_keys_of(settings: Any, backend: StageBackend, stage: str) -> list[str]:
    """A project crawling through scrapy-redis: the queue and dupefilter of the
    stage's spider, which a reset moves aside with a stage on Redis (left, the
    new crawl would find every link "seen" by the old one)."""
    if not (uses_shared_queue(settings) and backend.shares_queues):
        return []
    return scrapy_redis_keys(settings, stage_info(backend, stage)["spider"])


def reset_stage(backend: StageBackend, stage: str, shared_keys: list[str]) -> dict[str, Any]:
    """Move a stage aside, and its feed files first (as CHECKPOINT_RESET does), so
    that the next crawl starts over with new files: holding the stage's lock, so
    that no crawl starts meanwhile. ``shared_keys``: scrapy-redis's, moved with it."""
    with holding_stage(backend, stage):
        files = FeedFiles(backend.directory)
        feeds = files.move_aside(feed_offsets_if_readable(backend, stage))
        return {"stage": stage, "backup": backend.move_aside(stage, shared_keys), "feeds": feeds,
                "moved_with_it": shared_keys}


def confirm(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:  # no terminal to ask on
        return False


def reset_text(result: dict[str, Any]) -> str:
    text = f"Stage {result['stage']} reset; backup: {result['backup']}"
    if result["moved_with_it"]:
        text += f" (with scrapy-redis's {', '.join(result['moved_with_it'])})"
    return text + "".join(f"\n  feed {path} moved to {backup}" for path, backup in result["feeds"])
