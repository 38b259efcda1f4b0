"""Is every part of scrapy-resume enabled? A half-enabled crawl must not start.

A downloader middleware alone cannot see when a callback's output is fully
processed, so running with only some of the components would look protected
and silently lose work. The missing lines are named exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakSet

from scrapy import signals
from scrapy.exceptions import CloseSpider
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object

from scrapy_resume.config import cookies_checkpointed
from scrapy_resume.engine.feedfiles import feed_scheme

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One line of a manual set-up: a component, its setting and its priority."""

    setting: str
    path: str  # its public dotted path
    priority: int

    @property
    def cls(self) -> type:
        return load_object(self.path)

    @property
    def line(self) -> str:
        return f'{self.setting} = {{"{self.path}": {self.priority}}}'


# Outermost on both sides: the downloader middleware sees downloads after
# retries gave up, the spider middleware sees every callback's final output.
# The add-on installs these, and a manual set-up missing one is refused.
COMPONENTS = (
    Component("DOWNLOADER_MIDDLEWARES", "scrapy_resume.CheckpointMiddleware", 1),
    Component("SPIDER_MIDDLEWARES", "scrapy_resume.CheckpointSpiderMiddleware", 1),
    Component("EXTENSIONS", "scrapy_resume.CheckpointExtension", 0),
)
#: In the place of Scrapy's CookiesMiddleware (same priority), unless
#: CHECKPOINT_COOKIES is off: the cookie jars are then part of the stage.
COOKIES = Component("DOWNLOADER_MIDDLEWARES", "scrapy_resume.CheckpointCookiesMiddleware", 700)
SCRAPY_COOKIES_PATH = "scrapy.downloadermiddlewares.cookies.CookiesMiddleware"
COOKIES_LINE = (f'DOWNLOADER_MIDDLEWARES = {{"{COOKIES.path}": {COOKIES.priority}, '
                f'"{SCRAPY_COOKIES_PATH}": None}}  # or CHECKPOINT_COOKIES = False')
FEED_STORAGE_PATH = "scrapy_resume.ResumableFileFeedStorage"
REMOTE_STORAGE_PATH = "scrapy_resume.ResumableRemoteFeedStorage"
#: a remote scheme -> the storage that uploads its batches once each (remotefeeds.py)
REMOTE_STORAGES = {
    "s3": "scrapy_resume.ResumableS3FeedStorage",
    "gs": "scrapy_resume.ResumableGCSFeedStorage",
    "ftp": "scrapy_resume.ResumableFTPFeedStorage",
    "ftps": "scrapy_resume.ResumableFTPFeedStorage",
}
FEED_STORAGE_LINE = f'FEED_STORAGES = {{"": "{FEED_STORAGE_PATH}", "file": "{FEED_STORAGE_PATH}"}}'


def _loaded(components: list[Any]) -> list[type]:
    classes = []
    for component in components:
        try:
            classes.append(load_object(component) if isinstance(component, str) else component)
        except (ImportError, NameError, ValueError):
            continue  # Scrapy itself reports components that do not load
    return classes


def _enabled_subclasses(settings: BaseSettings, name: str, cls: type) -> list[type]:
    """The components enabled in setting ``name`` that are ``cls`` or subclass it."""
    classes = _loaded(build_component_list(settings.getwithbase(name)))
    return [c for c in classes if isinstance(c, type) and issubclass(c, cls)]


def has_component(settings: BaseSettings, name: str, cls: type) -> bool:
    return bool(_enabled_subclasses(settings, name, cls))


def local_feed_storages(settings: BaseSettings) -> dict[str, Any]:
    """The storage class (None if it does not load) of every local file feed."""
    storages = settings.getwithbase("FEED_STORAGES")
    found = {}
    for uri in settings.getdict("FEEDS"):
        scheme = feed_scheme(str(uri))
        if scheme not in ("", "file"):
            continue
        try:
            found[str(uri)] = load_object(storages[scheme])
        except (KeyError, ImportError, NameError, ValueError):
            found[str(uri)] = None
    return found


def own_feed_storages(settings: BaseSettings) -> dict[str, str]:
    """Local feeds written by a storage of the project's own (neither Scrapy's
    FileFeedStorage nor ours): uri -> the storage's dotted path."""
    from scrapy.extensions.feedexport import FileFeedStorage

    resumable = load_object(FEED_STORAGE_PATH)
    return {
        uri: f"{storage.__module__}.{storage.__qualname__}"
        for uri, storage in local_feed_storages(settings).items()
        if isinstance(storage, type) and storage is not FileFeedStorage
        and not issubclass(storage, resumable)
    }


def _file_feeds_covered(settings: BaseSettings) -> bool:
    """Every local feed is written through the checkpoint, or by the project's
    own storage (refused apart, see check_feeds)."""
    resumable = load_object(FEED_STORAGE_PATH)
    own = own_feed_storages(settings)
    return all(
        uri in own or (isinstance(storage, type) and issubclass(storage, resumable))
        for uri, storage in local_feed_storages(settings).items()
    )


def cookie_jars_covered(settings: BaseSettings) -> bool:
    """With CHECKPOINT_COOKIES on, the cookies middleware is ours, and Scrapy's is off."""
    if not cookies_checkpointed(settings):
        return True
    cookies = _enabled_subclasses(settings, COOKIES.setting, load_object(SCRAPY_COOKIES_PATH))
    return bool(cookies) and all(issubclass(c, COOKIES.cls) for c in cookies)


def missing_lines(settings: BaseSettings) -> list[str]:
    """The settings lines that would complete a manual set-up; empty when complete."""
    lines = [c.line for c in COMPONENTS if not has_component(settings, c.setting, c.cls)]
    if not cookie_jars_covered(settings):
        lines.append(COOKIES_LINE)
    if not _file_feeds_covered(settings):
        lines.append(FEED_STORAGE_LINE)
    return lines


def half_enabled_message(lines: list[str]) -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return (
        "scrapy-resume is only partly enabled, so this crawl would not survive an "
        "interruption. Add these lines to your settings (merging them into any dicts you "
        "already have):\n"
        f"{body}\n"
        'or replace the manual set-up with the add-on: ADDONS = {"scrapy_resume.Addon": 0}'
    )


# Crawlers refused by refuse_on_open: their feeds must not be touched either.
_refused: WeakSet[Crawler] = WeakSet()


def refuse_on_open(crawler: Crawler, reason: str, message: str) -> None:
    """Close the spider as soon as it opens, before any request is sent."""
    _refused.add(crawler)

    def refuse(spider: Any) -> None:
        logger.error(message, extra={"spider": spider})
        raise CloseSpider(reason)

    crawler.signals.connect(refuse, signal=signals.spider_opened, weak=False)


def is_refused(crawler: Crawler) -> bool:
    return crawler in _refused
