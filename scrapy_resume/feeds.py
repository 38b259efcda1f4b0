"""A file feed storage whose buffers are flushed before each checkpoint commit.

Scrapy writes file feeds through an 8 KiB buffer. A request must not become
``done`` while its items still sit in that buffer, or a SIGKILL loses them.
The add-on registers this storage for plain paths (scheme ``""``) and
``file://`` URIs.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FileFeedStorage

from .middleware import runtime_of

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred


class ResumableFileFeedStorage(FileFeedStorage):
    def __init__(
        self,
        uri: str,
        *,
        feed_options: dict[str, Any] | None = None,
        crawler: Crawler | None = None,
    ):
        super().__init__(uri, feed_options=feed_options)
        self.crawler = crawler

    @classmethod
    def from_crawler(
        cls, crawler: Crawler, uri: str, *, feed_options: dict[str, Any] | None = None
    ) -> ResumableFileFeedStorage:
        return cls(uri, feed_options=feed_options, crawler=crawler)

    def _runtime(self) -> Any:
        return runtime_of(self.crawler) if self.crawler is not None else None

    def open(self, spider: Spider) -> IO[bytes]:
        file = super().open(spider)
        runtime = self._runtime()
        if runtime is not None:
            runtime.register_feed(file)
        return file

    def store(self, file: IO[bytes]) -> Deferred[None] | None:
        runtime = self._runtime()
        if runtime is not None:
            runtime.unregister_feed(file)
        return super().store(file)
