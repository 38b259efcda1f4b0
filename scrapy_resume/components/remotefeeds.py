"""Remote feeds (S3, GCS, FTP): batches uploaded once each, exactly-once.

Scrapy writes a remote feed into a temporary file and uploads it when the
feed (or a batch) closes; a crash loses what was not uploaded, and a restart
uploads its batches over the old ones from batch 1. With batches, these
storages stage each batch file in the checkpoint directory, written through
the checkpoint like a local batch file, and upload it with Scrapy's own
storage once it is finished and committed, recording it as uploaded (see
engine/uploads.py). Without batches a remote feed is left to Scrapy's
storage, unchanged, and the crawl is warned (feedformats.check_feeds).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.defer import maybeDeferred

from scrapy_resume.components.batchfeeds import upload_finished
from scrapy_resume.components.feedformats import feeds_with_options
from scrapy_resume.components.feedstorage import ResumableFileFeedStorage
from scrapy_resume.engine.feedfiles import feed_scheme

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

    from scrapy_resume.engine.framing import Framing
    from scrapy_resume.engine.runtime import CheckpointRuntime
    from scrapy_resume.engine.uploads import Send


class ResumableRemoteFeedStorage(ResumableFileFeedStorage):
    """Stands for one of Scrapy's remote feed storages (``scrapy_storage``)."""

    scrapy_storage = ""  # the dotted path of the Scrapy storage it stands for

    def __init__(self, uri: str, *, feed_options: dict[str, Any] | None = None,
                 crawler: Crawler | None = None):
        super().__init__(uri, feed_options=feed_options, crawler=crawler)
        self.uri = uri
        self.storage_class = load_object(self.scrapy_storage)
        self.plain = self._scrapy_storage(uri, feed_options)  # (NotConfigured as in Scrapy)

    def _scrapy_storage(self, uri: str, feed_options: dict[str, Any] | None) -> Any:
        if self.crawler is None:
            return self.storage_class(uri, feed_options=feed_options)
        return build_from_crawler(self.storage_class, self.crawler, uri,
                                  feed_options=feed_options)

    @property
    def batched(self) -> bool:
        return bool(self.feed_options.get("batch_item_count"))

    def _open_plain(self, spider: Spider) -> IO[bytes]:
        return self.plain.open(spider)  # type: ignore[no-any-return]

    def _open_whole(self, spider: Spider, runtime: Any, framing: Framing,
                    after_close: bool) -> IO[bytes]:
        # a feed without batches (warned), or an empty batch 1 stored at close
        return self._open_plain(spider)

    def _store_plain(self, file: IO[bytes]) -> Deferred[None] | None:
        return self.plain.store(file)  # type: ignore[no-any-return]

    def _uploader(self) -> Send | None:
        return self.upload if self.batched else None

    def upload(self, path: str, uri: str) -> Deferred[Any]:
        """One finished batch file to its URI, by Scrapy's storage. The batch
        file is whole: it replaces whatever is there (never FTP's append)."""
        storage = self._scrapy_storage(uri, {**self.feed_options, "overwrite": True})
        return maybeDeferred(storage.store, open(path, "rb"))  # (the storage closes it)


def upload_left_batches(crawler: Crawler, runtime: CheckpointRuntime, spider: Spider, *,
                        last: bool = False) -> None:
    """When a stage opens: upload the finished batches an earlier run left not
    uploaded (Scrapy opens a batch only for its first item, and a resume may
    export none). ``last``: the stage is completed, so is its current batch."""
    storages = crawler.settings.getwithbase("FEED_STORAGES")
    for template, options in feeds_with_options(crawler.settings):
        scheme = feed_scheme(template)
        if scheme in ("", "file") or not options.get("batch_item_count"):
            continue
        storage = load_object(storages[scheme])
        if isinstance(storage, type) and issubclass(storage, ResumableRemoteFeedStorage):
            uploader = storage.from_crawler(crawler, template, feed_options=options)
            upload_finished(runtime, spider, template, uploader.upload, last=last)


class ResumableS3FeedStorage(ResumableRemoteFeedStorage):
    scrapy_storage = "scrapy.extensions.feedexport.S3FeedStorage"


class ResumableGCSFeedStorage(ResumableRemoteFeedStorage):
    scrapy_storage = "scrapy.extensions.feedexport.GCSFeedStorage"


class ResumableFTPFeedStorage(ResumableRemoteFeedStorage):
    scrapy_storage = "scrapy.extensions.feedexport.FTPFeedStorage"


# Scrapy names its feed stats after the storage class (feedexport/success_count/
# S3FeedStorage): each keeps the name of the storage it stands for.
for _storage in (ResumableS3FeedStorage, ResumableGCSFeedStorage, ResumableFTPFeedStorage):
    _storage.__name__ = _storage.scrapy_storage.rpartition(".")[2]
