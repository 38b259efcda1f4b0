"""What every test spider shares: its final stats are written to a file."""

from __future__ import annotations

import json

import scrapy
from scrapy import signals
from scrapy.dupefilters import RFPDupeFilter
from scrapy.extensions.feedexport import FileFeedStorage


class StatsDumpingSpider(scrapy.Spider):
    stats_file: str | None = None

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        # engine_stopped comes after every spider_closed handler has run
        crawler.signals.connect(spider.dump_stats, signal=signals.engine_stopped)
        return spider

    def dump_stats(self) -> None:
        if self.stats_file:
            with open(self.stats_file, "w") as f:
                json.dump(self.crawler.stats.get_stats(), f, default=str)


class OwnDupeFilter(RFPDupeFilter):
    """A project's own dupefilter: scrapy-resume cannot know what it lets through."""


class NumberedLinesExporter:
    """A project's exporter whose lines depend on the ones before (a running
    number): a file of it cannot be cut back and continued."""

    def __init__(self, file, **kwargs):
        self.file = file
        self.count = 0

    def start_exporting(self):
        pass

    def export_item(self, item):
        self.count += 1
        self.file.write(f"{self.count}: {dict(item)!r}\n".encode())

    def finish_exporting(self):
        pass


class Rot13:
    """A project's post-processing plugin: scrapy-resume cannot know whether
    its streams can be concatenated."""

    def __init__(self, file, feed_options):
        self.file = file

    def write(self, data):
        return self.file.write(data)

    def close(self):
        pass


class OwnFileStorage(FileFeedStorage):
    """A project's own storage for local files (say, one that also logs)."""


class FirstPagesOnly:
    """An ``item_filter``: the items of the first pages of a graph site (n < 20)."""

    def __init__(self, feed_options):
        pass

    def accepts(self, item) -> bool:
        return int(item["url"].rsplit("/", 1)[1]) < 20
