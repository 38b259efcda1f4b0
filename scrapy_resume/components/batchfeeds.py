"""The Scrapy side of batched feeds: which FEEDS entry a storage belongs to,
and how its batch files are named (see engine/batchedfeed.py)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FeedExporter, apply_uri_params
from scrapy.utils.misc import load_object
from w3lib.url import file_uri_to_path

from scrapy_resume.engine.feedbuffer import FeedBuffer

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


def open_batched_feed(
    runtime: CheckpointRuntime, crawler: Crawler, spider: Spider, feed_options: dict[str, Any],
    framing: Framing, compress: Any, write_mode: str,
) -> Any:
    """The feed's BatchedFeed: its batch files continued where the stage left them, or new."""
    template = feed_template(crawler, feed_options)
    files = runtime.feed_files
    name = batched_feed_name(runtime, crawler, spider, feed_options)
    found = runtime.committer.batched.get(name)
    if found is not None:
        return found

    def buffer_on(path: str, file: IO[bytes], offset: int) -> FeedBuffer:
        key = files.key(path)
        return FeedBuffer(path, key, file, offset, framing, begun=runtime.committer.feed_begun(key),
                          compress=compress)

    def open_batch(batch_id: int) -> FeedBuffer:
        path = local_path(batch_uri(template, spider, feed_options, batch_id))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        file = open(path, write_mode)  # as Scrapy opens each batch file (-o appends)
        return buffer_on(path, file, file.tell())

    current = None
    entry = runtime.committer.current_batch(name)
    if entry is not None:  # a resume: the current batch goes on (cut back already)
        path = files.path(entry["file"])
        committed = runtime.committer.committed_feed_offset(entry["file"])
        if os.path.getsize(path) > committed:  # the end a document was given back
            os.truncate(path, committed)
        current = buffer_on(path, open(path, "ab"), committed)
        current.ended = entry["items"] >= entry["size"]  # full: its end is committed
    feed = runtime.committer.add_batched_feed(name, feed_options["batch_item_count"], framing, open_batch,
                                    current)
    return feed
