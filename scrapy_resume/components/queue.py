"""A scrapy-redis crawl: is this one, and is it set up so that no worker can
lose a request? And the names of its keys. The classes themselves are in
leasedqueue.py (the queue) and shareddupefilter.py (the dupefilter).
"""

from __future__ import annotations

import sys
from typing import Any

from scrapy_resume.store.redis.keys import CALLS_SUFFIX

QUEUE_CLASS_PATH = "scrapy_resume.LeasedPriorityQueue"
DUPEFILTER_PATH = "scrapy_resume.SharedDupeFilter"
#: the dupefilter ours stands in for (named: scrapy-redis is optional)
SCRAPY_REDIS_DUPEFILTER = "scrapy_redis.dupefilter.RFPDupeFilter"


def uses_shared_queue(settings: Any) -> bool:
    """Is SCHEDULER scrapy-redis's scheduler, or a subclass of it (a project's own)?"""
    from scrapy.utils.misc import load_object

    scheduler = settings.get("SCHEDULER")
    try:
        loaded = load_object(scheduler) if isinstance(scheduler, str) else scheduler
    except (ImportError, NameError, ValueError):
        return False  # Scrapy itself reports a scheduler that does not load
    # loading a subclass imported scrapy-redis; otherwise it cannot be one
    redis_scheduler = sys.modules.get("scrapy_redis.scheduler")
    return (
        redis_scheduler is not None and isinstance(loaded, type)
        and issubclass(loaded, redis_scheduler.Scheduler)
    )


def scrapy_redis_keys(settings: Any, spider_name: str) -> list[str]:
    """scrapy-redis's keys of a spider's crawl: its request queue, its dupefilter
    (and SharedDupeFilter's calls). A reset moves them aside with the stage."""
    from scrapy_redis import defaults

    template = settings.get("SCHEDULER_DUPEFILTER_KEY") or defaults.SCHEDULER_DUPEFILTER_KEY
    dupefilter = template % {"spider": spider_name}
    return [queue_key(settings, spider_name), dupefilter, dupefilter + CALLS_SUFFIX]


def names_scrapy_redis_dupefilter(settings: Any) -> bool:
    """Is DUPEFILTER_CLASS scrapy-redis's own RFPDupeFilter (a project's own, a
    subclass, is left alone)?"""
    value = settings.get("DUPEFILTER_CLASS")
    loaded = sys.modules.get("scrapy_redis.dupefilter")
    return value == SCRAPY_REDIS_DUPEFILTER or (
        loaded is not None and value is loaded.RFPDupeFilter
    )


def shared_queue_problems(settings: Any, backend_url: str) -> list[str]:
    """What stops a scrapy-redis crawl from being checkpointed safely; each
    line says which setting to change."""
    from scrapy.utils.misc import load_object

    from scrapy_resume.components.leasedqueue import LeasedPriorityQueue
    from scrapy_resume.store.redis.connection import client_for, server_identity

    if not backend_url:
        return [
            "scrapy-redis shares one queue between workers, and a SQLite checkpoint belongs to "
            "one process: set CHECKPOINT_BACKEND to the Redis server scrapy-redis uses "
            "(for example -s CHECKPOINT_BACKEND=redis://127.0.0.1:6379/0)."
        ]
    problems = []
    if not settings.getbool("SCHEDULER_PERSIST"):
        problems.append(
            "Set SCHEDULER_PERSIST = True: without it, the first worker to stop flushes the "
            "shared queue and dupefilter, and the pending requests with them."
        )
    if settings.getbool("SCHEDULER_FLUSH_ON_START"):
        problems.append(
            "Set SCHEDULER_FLUSH_ON_START = False: a starting worker would throw away the "
            "queue the other workers are crawling."
        )
    queue_class = settings.get("SCHEDULER_QUEUE_CLASS") or "scrapy_redis.queue.PriorityQueue"
    try:
        loaded = load_object(queue_class) if isinstance(queue_class, str) else queue_class
    except (ImportError, NameError, ValueError):
        loaded = None
    if not (isinstance(loaded, type) and issubclass(loaded, LeasedPriorityQueue)):
        problems.append(
            f'Set SCHEDULER_QUEUE_CLASS = "{QUEUE_CLASS_PATH}" (the add-on does it): each '
            f"request a worker takes from the queue must be leased in the same step, or a "
            f"killed worker loses it. (Now: {queue_class})"
        )
    if names_scrapy_redis_dupefilter(settings):
        problems.append(
            f'Set DUPEFILTER_CLASS = "{DUPEFILTER_PATH}" (the add-on does it): when a '
            f"connection drops before the reply to scrapy-redis's add of a new request came, "
            f"its client sends it again, and the request is dropped as a duplicate of itself."
        )
    from scrapy_redis.connection import get_redis_from_settings

    queue_server = server_identity(get_redis_from_settings(settings))
    checkpoint_server = server_identity(client_for(backend_url))
    if queue_server != checkpoint_server:
        problems.append(
            "CHECKPOINT_BACKEND and scrapy-redis (REDIS_URL / REDIS_HOST) must name the same "
            "Redis server and database: a request is leased in the same step that takes it "
            f"from the queue. Now: queue on {queue_server}, checkpoint on {checkpoint_server}."
        )
    return problems


def queue_key(settings: Any, spider_name: str) -> str:
    """scrapy-redis's request queue of this spider."""
    from scrapy_redis import defaults

    template = settings.get("SCHEDULER_QUEUE_KEY") or defaults.SCHEDULER_QUEUE_KEY
    return template % {"spider": spider_name}
