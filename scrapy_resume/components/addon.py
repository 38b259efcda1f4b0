"""The one-line set-up: ``ADDONS = {"scrapy_resume.Addon": 0}``."""

from __future__ import annotations

from scrapy.settings import BaseSettings

from scrapy_resume.components.dupefilter import compact_dupefilter
from scrapy_resume.components.enabling import (
    COMPONENTS,
    COOKIES,
    FEED_STORAGE_PATH,
    REMOTE_STORAGES,
    SCRAPY_COOKIES_PATH,
)
from scrapy_resume.components.queue import (
    DUPEFILTER_PATH,
    QUEUE_CLASS_PATH,
    names_scrapy_redis_dupefilter,
    uses_shared_queue,
)
from scrapy_resume.components.spillqueue import memory_queues
from scrapy_resume.config import cookies_checkpointed, redis_retry_seconds


class Addon:
    """Enables checkpointing and installs every component at the right place.

    Runs before the settings freeze, at "addon" priority, so a project or
    command-line setting (``CHECKPOINT_ENABLED=False``, an explicit
    FEED_STORAGES entry) still wins.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        settings.set("CHECKPOINT_ENABLED", True, priority="addon")
        for component in COMPONENTS:
            settings.set_in_component_priority_dict(
                component.setting, component.cls, component.priority
            )
        if cookies_checkpointed(settings):  # our cookies middleware, in the place of Scrapy's
            settings.set_in_component_priority_dict(COOKIES.setting, COOKIES.cls, COOKIES.priority)
            # off by its import path: Scrapy's base setting names it so, and a class
            # key would be another entry
            middlewares = settings.getdict(COOKIES.setting)
            middlewares[SCRAPY_COOKIES_PATH] = None
            settings.set(COOKIES.setting, middlewares, settings.getpriority(COOKIES.setting))
        for name, queue in memory_queues(settings).items():  # a bounded frontier in memory
            settings.set(name, queue, settings.getpriority(name))
        if dupefilter := compact_dupefilter(settings):  # and compact fingerprints
            settings.set("DUPEFILTER_CLASS", dupefilter, settings.getpriority("DUPEFILTER_CLASS"))
        storages = settings.getdict("FEED_STORAGES")
        for scheme in ("", "file"):  # plain paths have the scheme ""
            storages.setdefault(scheme, FEED_STORAGE_PATH)
        for scheme, path in REMOTE_STORAGES.items():  # (their batches: uploaded once each)
            storages.setdefault(scheme, path)
        priority = settings.getpriority("FEED_STORAGES") or "addon"
        settings.set("FEED_STORAGES", storages, priority=priority)
        if uses_shared_queue(settings):
            # scrapy-redis: a pop from the shared queue must also be a lease
            settings.set("SCHEDULER_QUEUE_CLASS", QUEUE_CLASS_PATH, priority="addon")
            if names_scrapy_redis_dupefilter(settings):  # and an add sent twice adds once
                priority = settings.getpriority("DUPEFILTER_CLASS")
                settings.set("DUPEFILTER_CLASS", DUPEFILTER_PATH, priority)
            # and its client waits out a Redis restart as ours does (REDIS_PARAMS: scrapy-redis's
            # documented arguments of its client; a project's own entries win)
            from scrapy_resume.store.redis.connection import retrying  # (Redis only)

            params = settings.getdict("REDIS_PARAMS")
            for name, value in retrying(redis_retry_seconds(settings)).items():
                params.setdefault(name, value)
            settings.set("REDIS_PARAMS", params, settings.getpriority("REDIS_PARAMS") or "addon")
