"""The Scrapy side of batched feeds: which FEEDS entry a storage belongs to,
and how its batch files are named (see engine/batchedfeed.py). A remote
feed's batches are staged in the checkpoint directory and uploaded once
finished (see engine/uploads.py)."""

from __future__ import annotations

import hashlib
import os
import posixpath
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlunparse

from scrapy.extensions.feedexport import FeedExporter, apply_uri_params
from scrapy.utils.misc import load_object
from w3lib.url import file_uri_to_path

from scrapy_resume.engine.feedbuffer import FeedBuffer
from scrapy_resume.engine.feedfiles import feed_scheme, reopen_at
from scrapy_resume.engine.uploads import STAGING_SUFFIX

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from scrapy_resume.engine.framing import Framing
    from scrapy_resume.engine.runtime import CheckpointRuntime
    from scrapy_resume.engine.uploads import Send


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


def without_credentials(uri: str) -> str:
    """A URI as the checkpoint records it: no user name or password."""
    parts = urlparse(uri)
    return urlunparse(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def with_credentials(uri: str, template: str) -> str:
    """A recorded URI given back the credentials the feed's template has now."""
    credentials = urlparse(template).netloc.rpartition("@")[0]
    if not credentials:
        return uri
    parts = urlparse(uri)
    return urlunparse(parts._replace(netloc=f"{credentials}@{parts.netloc}"))


def batched_feed_name(runtime: CheckpointRuntime, crawler: Crawler, spider: Spider,
                      feed_options: dict[str, Any]) -> str:
    """A batched feed's name in the stage: its template's key (a remote feed's
    template itself)."""
    template = feed_template(crawler, feed_options).replace("%(name)s", spider.name)
    if feed_scheme(template) not in ("", "file"):
        return without_credentials(template)
    return runtime.feed_files.key(local_path(template))


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

    def announced(self, keys: list[str]) -> dict:
        return {}

    def finished(self, buffer: FeedBuffer) -> None:
        """A local batch file is where it belongs already."""

    def sealed(self, key: str) -> bool:
        """Is this batch file never to be written again, even if not full?"""
        return False


def staging_directory(runtime: CheckpointRuntime, spider: Spider, template: str) -> str:
    """Where a remote feed's batch files are staged: the stage's own folder."""
    name = without_credentials(template.replace("%(name)s", spider.name))
    stage = runtime.config.stage_name(spider.name)
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return os.path.abspath(os.path.join(runtime.config.directory, stage + STAGING_SUFFIX, digest))


def upload_finished(runtime: CheckpointRuntime, spider: Spider, template: str,
                    send: Send, *, last: bool = False) -> None:
    """Upload the finished batches of a remote feed not uploaded yet: those a
    run left (killed, or their upload failed), not the one being filled unless
    it is the ``last``."""
    name = without_credentials(template.replace("%(name)s", spider.name))
    entry = runtime.committer.current_batch(name) or {}
    uploads = runtime.committer.uploads
    upcoming = set(entry.get("upcoming", []))
    if last:
        uploads.forget(upcoming)  # (no record came to them)
    filling = set(upcoming)
    if entry.get("file") and entry["items"] < entry["size"] and not last:
        filling.add(entry["file"])
    prefix = runtime.feed_files.key(staging_directory(runtime, spider, template)) + os.sep
    for key in list(uploads.entries):
        if key.startswith(prefix) and key not in filling:
            uploads.upload(key, lambda path, uri: send(path, with_credentials(uri, template)),
                           retry=True)


class StagedBatchFiles(StageBatchFiles):
    """A remote feed's batch files: staged in the checkpoint directory, each
    uploaded (``send``) once it is finished and committed, never written
    again once it is uploaded."""

    def __init__(self, runtime: CheckpointRuntime, template: str, spider: Spider,
                 feed_options: dict[str, Any], framing: Framing, compress: Any, send: Send):
        super().__init__(runtime, template, spider, feed_options, framing, compress, "wb")
        self.send = send
        self.uploads = runtime.committer.uploads
        self.staging = staging_directory(runtime, spider, template)
        self.uris: dict[str, str] = {}  # named, not announced yet

    def path(self, batch_id: int) -> str:
        uri = batch_uri(self.template, self.spider, self.feed_options, batch_id)
        name = posixpath.basename(urlparse(uri).path) or "batch"
        path = os.path.join(self.staging, f"{batch_id}-{name}")
        self.uris[self.key(path)] = without_credentials(uri)
        return path

    def start(self, path: str) -> int:
        return 0  # (the file is ours: a leftover of a reset stage is not kept)

    def announced(self, keys: list[str]) -> dict:
        return self.uploads.announce({key: self.uris.pop(key) for key in keys})

    def finished(self, buffer: FeedBuffer) -> None:
        self.uploads.upload(buffer.key, self._send)

    def _send(self, path: str, uri: str) -> Any:
        return self.send(path, with_credentials(uri, self.template))

    def sealed(self, key: str) -> bool:
        return self.uploads.uploaded(key)


def open_batched_feed(
    runtime: CheckpointRuntime, crawler: Crawler, spider: Spider, feed_options: dict[str, Any],
    framing: Framing, compress: Any, write_mode: str, send: Send | None = None,
) -> Any:
    """The feed's BatchedFeed: its batch files continued where the stage left
    them, or new. ``send``: the feed is remote, and its batches are uploaded so."""
    name = batched_feed_name(runtime, crawler, spider, feed_options)
    committer = runtime.committer
    found = committer.batched.get(name)
    if found is not None:
        return found
    template = feed_template(crawler, feed_options)
    if send is None:
        files = StageBatchFiles(runtime, template, spider, feed_options, framing, compress,
                                write_mode)
    else:
        files = StagedBatchFiles(runtime, template, spider, feed_options, framing, compress,
                                 send)
    entry = committer.current_batch(name) or {}
    current = None
    if entry.get("file") and not files.sealed(entry["file"]):
        # a resume: the current batch goes on (cut back already)
        current = files.open(entry["file"], committer.committed_feed_offset(entry["file"]))
        current.ended = entry["items"] >= entry["size"]  # full: its end is committed
    upcoming = [files.open(key, committer.committed_feed_offset(key))
                for key in entry.get("upcoming", [])]
    return committer.add_batched_feed(name, feed_options["batch_item_count"], framing, files,
                                      current, upcoming)
