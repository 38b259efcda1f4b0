"""Which feeds can be exactly-once, how each format frames its records, and
how a compressed feed is written one whole compressed stream per commit.

A format's framing (engine/framing.py) is found by running its exporter, with
the feed's own options, on two empty items: the bytes before the first are
the header, what the second adds beyond the first is the separator. So a
project's subclass of a Scrapy exporter, ``FEED_EXPORT_INDENT``,
``FEED_EXPORT_ENCODING``, ``item_export_kwargs`` (an XML root element...) are
all framed as they really write.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.utils.conf import feed_complete_default_values_from_settings
from scrapy.utils.misc import build_from_crawler, load_object
from w3lib.url import file_uri_to_path

from scrapy_resume.components.enabling import (
    REMOTE_STORAGE_PATH,
    REMOTE_STORAGES,
    own_feed_storages,
)
from scrapy_resume.engine.feedfiles import feed_scheme
from scrapy_resume.engine.framing import CSV, RECORDS, Framing

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings


class UnframedFormat(Exception):
    """The exporter's output cannot be cut back to a record and continued."""


def framing_for(
    settings: BaseSettings, feed_options: dict[str, Any], crawler: Crawler | None = None
) -> Framing:
    """How the exporter of a feed (its options completed, as FeedExporter has
    them) frames its records. Raises UnframedFormat."""
    # imported here: FeedExporter has loaded them by then (importing them costs ~70 ms)
    from scrapy.exporters import (
        CsvItemExporter,
        JsonLinesItemExporter,
        MarshalItemExporter,
        PickleItemExporter,
    )

    fmt = feed_options.get("format")
    try:
        exporter_class = load_object(settings.getwithbase("FEED_EXPORTERS")[fmt])
    except (KeyError, ImportError, NameError, ValueError):
        raise UnframedFormat(f"the {fmt!r} format has no exporter") from None
    if not isinstance(exporter_class, type):
        raise UnframedFormat(f"the {fmt!r} exporter is not a class")
    if issubclass(exporter_class, CsvItemExporter):
        return CSV
    if issubclass(exporter_class, (JsonLinesItemExporter, MarshalItemExporter,
                                   PickleItemExporter)):
        return RECORDS
    return _probe(exporter_class, feed_options, crawler)


def _probe(exporter_class: type, feed_options: dict[str, Any], crawler: Crawler | None) -> Framing:
    file = io.BytesIO()
    kwargs = {
        "fields_to_export": feed_options.get("fields"),
        "encoding": feed_options.get("encoding"),
        "indent": feed_options.get("indent"),
        **(feed_options.get("item_export_kwargs") or {}),
    }
    try:
        if crawler is not None:
            exporter = build_from_crawler(exporter_class, crawler, file, **kwargs)
        else:
            exporter = exporter_class(file, **kwargs)
        exporter.start_exporting()
        header = file.getvalue()
        exporter.export_item({})
        first = file.getvalue()[len(header):]
        exporter.export_item({})
        second = file.getvalue()[len(header) + len(first):]
        exporter.finish_exporting()
        trailer = file.getvalue()[len(header) + len(first) + len(second):]
    except Exception as exc:
        raise UnframedFormat(f"its exporter failed on an empty item ({exc!r})") from None
    if not first or not second.endswith(first) or first.endswith(header or b"\0"):
        raise UnframedFormat(
            f"{exporter_class.__name__} does not write each item as one record with a fixed "
            f"separator, so a file cannot be cut back to an item and continued"
        )
    return Framing("document", header, second[: len(second) - len(first)], trailer)


#: Where the feed storage keeps a feed's ``postprocessing`` once it has taken it over.
TAKEN_OVER = "checkpoint_postprocessing"


def compressor_for(feed_options: dict[str, Any]) -> Callable[[bytes], bytes] | None:
    """A function that turns the bytes of one commit into whole compressed
    streams (a gzip member, a bz2 or xz stream) through the feed's
    post-processing plugins; None when the feed has none. Raises
    UnframedFormat for plugins whose streams cannot be concatenated."""
    plugins = feed_options.get("postprocessing") or feed_options.get(TAKEN_OVER)
    if not plugins:
        return None
    from scrapy.extensions.postprocessing import PostProcessingManager

    for plugin in plugins:
        try:
            loaded = load_object(plugin) if isinstance(plugin, str) else plugin
        except (ImportError, NameError, ValueError):
            raise UnframedFormat(f"its post-processing plugin {plugin} does not load") from None
        _check_concatenable(loaded, feed_options)

    def compress(data: bytes) -> bytes:
        sink = io.BytesIO()
        manager = PostProcessingManager(plugins, sink, feed_options)
        manager.write(data)
        manager.close()  # the plugins close their stream, not the sink
        return sink.getvalue()

    return compress


def _check_concatenable(plugin: Any, feed_options: dict[str, Any]) -> None:
    """gzip members, bz2 streams and xz streams read back as one file when
    concatenated (by gzip, bzip2, xz and Python's modules alike): each commit
    can be one, so a file can be cut back to a commit and continued."""
    import lzma

    from scrapy.extensions.postprocessing import Bz2Plugin, GzipPlugin, LZMAPlugin

    name = getattr(plugin, "__name__", repr(plugin))
    if not isinstance(plugin, type) or not issubclass(plugin, (GzipPlugin, Bz2Plugin,
                                                                LZMAPlugin)):
        raise UnframedFormat(
            f"its post-processing plugin {name} is not one of Scrapy's GzipPlugin, Bz2Plugin "
            f"or LZMAPlugin, whose compressed streams can be concatenated"
        )
    if issubclass(plugin, LZMAPlugin) and feed_options.get("lzma_format") not in (
        None, lzma.FORMAT_XZ
    ):
        raise UnframedFormat(
            f"{name} writes lzma_format {feed_options['lzma_format']}; only the .xz format "
            f"(the default) can be concatenated"
        )


def _templates_known(crawler: Crawler) -> bool:
    """batchfeeds.feed_template finds a batched feed's template in FeedExporter.feeds:
    refuse at start, not when the first item is exported, if it could not."""
    from scrapy.extensions.feedexport import FeedExporter

    feeds = getattr(crawler.get_extension(FeedExporter), "feeds", None)
    return isinstance(feeds, dict) and any(isinstance(o, dict) for o in feeds.values())


def feeds_with_options(settings: BaseSettings) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every FEEDS entry: its URI, and its options completed as FeedExporter
    completes them (the settings' defaults, the format from the extension)."""
    for uri, options in settings.getdict("FEEDS").items():
        uri = str(uri)
        yield uri, feed_complete_default_values_from_settings(dict(options or {}), settings, uri)


def remote_feed_unprotected(settings: BaseSettings, uri: str, options: dict[str, Any]) -> str:
    """Why a feed that is not a local file (remote, stdout:...) is not
    exactly-once, or "" when its batches are uploaded once each by our storage
    (remotefeeds.py)."""
    scheme = feed_scheme(uri)
    if scheme not in REMOTE_STORAGES:  # stdout:, a project's own scheme
        return (
            f"Feed {uri} is not a local file: it is written as a whole, so scrapy-resume "
            f"cannot make it exactly-once across interruptions. Write a local .jsonl file "
            f"instead and upload it when the stage is completed."
        )
    if not options.get("batch_item_count"):
        return (
            f"Feed {uri} is uploaded as a whole when the crawl closes: a crash before then "
            f"loses its items (their requests are done, and are not fetched again). Give it "
            f"batches (batch_item_count in its FEEDS options, or FEED_EXPORT_BATCH_ITEM_COUNT, "
            f"and %(batch_id)d in its URI): scrapy-resume then uploads each batch once, when "
            f"it is complete and committed. Or write a local .jsonl file."
        )
    path = settings.getwithbase("FEED_STORAGES").get(scheme)
    try:
        storage = load_object(path)
    except (ImportError, NameError, ValueError, TypeError):
        return ""  # Scrapy itself reports a storage that does not load
    if isinstance(storage, type) and issubclass(storage, load_object(REMOTE_STORAGE_PATH)):
        return ""
    return (
        f"Feed {uri} is batched, but uploaded by {path}, not by scrapy-resume's storage: a "
        f"crash loses the batch being filled, and a resume uploads over earlier batches. Set "
        f'FEED_STORAGES = {{"{scheme}": "{REMOTE_STORAGES.get(scheme, "?")}"}} (the add-on '
        f"does it for Scrapy's own storages)."
    )


def check_feeds(
    settings: BaseSettings, crawler: Crawler | None = None, *, shared: bool = False,
    unprotected_feeds: bool = False,
) -> tuple[list[str], list[str]]:
    """Problems that forbid exactly-once output, and warnings about feeds we cannot cover."""
    problems: list[str] = []
    warnings: list[str] = []
    for uri, options in feeds_with_options(settings):
        if feed_scheme(uri) not in ("", "file"):
            unprotected = remote_feed_unprotected(settings, uri, options)
            if unprotected:
                warnings.append(unprotected)
                continue
        name = Path(file_uri_to_path(uri) if uri.startswith("file:") else uri).stem
        try:
            framing_for(settings, options, crawler)
        except UnframedFormat as exc:
            problems.append(
                f"Feed {uri} uses the {options.get('format')!r} format, which cannot be resumed "
                f"exactly-once: {exc}. Use a line format, e.g. -o {name}.jsonl (or .csv)."
            )
        if options.get("batch_item_count") and crawler is not None and not _templates_known(
            crawler
        ):
            problems.append(
                f"Feed {uri} is batched, and this Scrapy's FeedExporter does not show which "
                f"feed a storage belongs to (its public feeds dict): scrapy-resume cannot number "
                f"its batches. Write one file per stage without batches."
            )
        if options.get("batch_item_count") and shared:
            problems.append(
                f"Feed {uri} is batched (FEED_EXPORT_BATCH_ITEM_COUNT / batch_item_count), and "
                f"the workers of a shared stage would number their batches over each other. "
                f"Give each worker a feed of its own without batches."
            )
        try:
            compressor_for(options)
        except UnframedFormat as exc:
            problems.append(
                f"Feed {uri} cannot be resumed exactly-once: {exc}. Write a plain file and "
                f"compress it when the stage is completed."
            )
    for uri, storage in own_feed_storages(settings).items():
        message = (
            f"Feed {uri} is written by {storage}, a feed storage of your own, which writes "
            f"outside the checkpoint: after a crash its file may lose or repeat items. Make it "
            f"a subclass of scrapy_resume.ResumableFileFeedStorage (which writes through the "
            f"checkpoint), or set CHECKPOINT_UNPROTECTED_FEEDS=True to run with that risk."
        )
        (warnings if unprotected_feeds else problems).append(message)
    return problems, warnings
