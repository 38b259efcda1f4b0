"""The Scrapy side of batched feeds: which FEEDS entry a storage belongs to,
and how its batch files are named (see engine/batchedfeed.py)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FeedExporter, apply_uri_params
from scrapy.utils.misc import load_object
from w3lib.url import file_uri_to_path

from scrapy_resume.engine.feedbuffer import FeedBuffer
from scrapy_resume.engine.feedfiles import reopen_at

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.framing import Framing
    from scrapy_resume.engine.runtime import CheckpointRuntime


def feed_template(crawler: Crawler, feed_options: dict[str, Any]) -> str:
    """The FEEDS key (the URI template) of the feed these options belong to.

    FeedExporter keeps every feed's options by template in its public
    ``feeds`` dict, and hands that very dict to each storage it builds for the
    feed: the template is the key whose value *is* ``feed_options``.
    tests/integration/test_batched_feeds.py fails loudly if that changes.
    """
    exporter = crawler.get_extension(FeedExporter)
    for template, options in getattr(exporter, "feeds", {}).items():
        if options is feed_options:
            return template
    raise RuntimeError("scrapy-resume cannot tell which FEEDS entry a batched feed is")


def batch_uri(template: str, spider: Spider, feed_options: dict[str, Any], batch_id: int) -> str:
    """Batch ``batch_id``'s URI, with the parameters Scrapy gives its batches
    (FeedExporter._get_uri_params, which is private, builds the same)."""
    params = {name: getattr(spider, name) for name in dir(spider)}
    now = datetime.now(tz=timezone.utc)
    params["time"] = now.replace(microsecond=0).isoformat().replace(":", "-")
    params["batch_time"] = now.isoformat().replace(":", "-")
    params["batch_id"] = batch_id
    function = feed_options.get("uri_params")
    if function:
        changed = load_object(function)(params, spider)
        params = changed if changed is not None else params
    return apply_uri_params(template, params)


def local_path(uri: str) -> str:
    return os.path.abspath(file_uri_to_path(uri) if uri.startswith("file:") else uri)


def batched_feed_name(runtime: CheckpointRuntime, crawler: Crawler, spider: Spider,
                      feed_options: dict[str, Any]) -> str:
    """A batched feed's name in the stage: its template's key."""
    template = feed_template(crawler, feed_options)
    return runtime.feed_files.key(local_path(template.replace("%(name)s", spider.name)))


class StageBatchFiles:
    """A batched feed's files: named as Scrapy names its batches, opened through
    the checkpoint (see engine/batchedfeed.BatchFiles)."""

    def __init__(self, runtime: CheckpointRuntime, template: str, spider: Spider,
                 feed_options: dict[str, Any], framing: Framing, compress: Any,
                 write_mode: str):
        self.runtime = runtime
        self.template = template
        self.spider = spider
        self.feed_options = feed_options
        self.framing = framing
        self.compress = compress
        self.write_mode = write_mode  # "wb" (-O): a new batch file starts empty

    def path(self, batch_id: int) -> str:
        return local_path(batch_uri(self.template, self.spider, self.feed_options, batch_id))

    def key(self, path: str) -> str:
        return self.runtime.feed_files.key(path)

    def start(self, path: str) -> int:
        """-o appends to a file already there, as Scrapy does; -O starts it empty."""
        if self.write_mode == "wb" or not os.path.exists(path):
            return 0
        return os.path.getsize(path)

    def open(self, key: str, offset: int) -> FeedBuffer:
        path = self.runtime.feed_files.path(key)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        committer = self.runtime.committer
        return FeedBuffer(path, key, reopen_at(path, offset, create=True), offset, self.framing,
                          begun=committer.feed_begun(key), compress=self.compress)


def open_batched_feed(
    runtime: CheckpointRuntime, crawler: Crawler, spider: Spider, feed_options: dict[str, Any],
    framing: Framing, compress: Any, write_mode: str,
) -> Any:
    """The feed's BatchedFeed: its batch files continued where the stage left them, or new."""
    name = batched_feed_name(runtime, crawler, spider, feed_options)
    committer = runtime.committer
    found = committer.batched.get(name)
    if found is not None:
        return found
    files = StageBatchFiles(runtime, feed_template(crawler, feed_options), spider, feed_options,
                            framing, compress, write_mode)
    entry = committer.current_batch(name) or {}
    current = None
    if entry.get("file"):  # a resume: the current batch goes on (cut back already)
        current = files.open(entry["file"], committer.committed_feed_offset(entry["file"]))
        current.ended = entry["items"] >= entry["size"]  # full: its end is committed
    upcoming = [files.open(key, committer.committed_feed_offset(key))
                for key in entry.get("upcoming", [])]
    return committer.add_batched_feed(name, feed_options["batch_item_count"], framing, files,
                                      current, upcoming)
