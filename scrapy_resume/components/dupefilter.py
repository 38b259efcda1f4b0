"""The dupefilter the add-on puts in the place of Scrapy's RFPDupeFilter.

It is Scrapy's RFPDupeFilter (same fingerprints, same log lines and stats),
with the fingerprints it has seen in a KeySet (engine/keyset.py): about 30
bytes a request instead of about 95. With the requests themselves on disk
(spillqueue.py), that set is what a frontier of millions would otherwise
keep in memory. A checkpointed crawl's early-duplicates check (engine/
duplicates.py) asks the same set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from scrapy.dupefilters import RFPDupeFilter
from scrapy.utils.misc import load_object

from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.keyset import KeySet

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

SCRAPYS = "scrapy.dupefilters.RFPDupeFilter"
OURS = "scrapy_resume.components.dupefilter.CheckpointDupeFilter"


def compact_dupefilter(settings: BaseSettings) -> str | None:
    """The DUPEFILTER_CLASS the add-on sets: ours where Scrapy's is named (a
    dupefilter of the project's own, or scrapy-redis's, is left alone)."""
    value = settings.get("DUPEFILTER_CLASS")
    return OURS if value == SCRAPYS or value is load_object(SCRAPYS) else None


class CheckpointDupeFilter(RFPDupeFilter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = KeySet()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        dupefilter = super().from_crawler(crawler)
        runtime = runtime_of(crawler)
        if runtime is not None:  # (not in a debugging command without the extension)
            runtime.fingerprints_seen = dupefilter.seen
        return dupefilter

    def request_seen(self, request: Request) -> bool:
        if self.file:  # JOBDIR (which a checkpointed crawl refuses): Scrapy's own file
            return super().request_seen(request)
        return not self.seen.add(self.fingerprinter.fingerprint(request))
