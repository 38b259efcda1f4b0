"""EarlyDuplicates: drop a callback's links to pages the dupefilter has seen, at once.

A broad crawl's pages link mostly to pages seen already. Plain Scrapy sends
each such link through ``engine.crawl``, the ``request_scheduled`` signal,
the scheduler and the dupefilter, which drops it. A checkpointed crawl also
has a handler on ``request_scheduled`` and ``request_dropped``: two more
signal dispatches for every link, most of the cost of checkpointing a
link-heavy crawl.

With Scrapy's own scheduler and dupefilter, a request is certain to be
dropped if the dupefilter has seen its fingerprint. We know it has when a
request with that fingerprint was fetched (the scheduler gave it to the
downloader, and took it through the dupefilter first), or was itself dropped
as a duplicate (``request_dropped``: with Scrapy's scheduler, only the
dupefilter sends it there). Not when our ``request_scheduled`` handler lets a
request through: a handler after ours may still refuse it (OffsiteMiddleware
does), and then the dupefilter never sees it. So our spider middleware drops
such a link itself, before it is scheduled (the stat
``checkpoint/duplicates_early`` counts them); the first link to a page that
is queued but not fetched yet still goes to the dupefilter, which has the
last word.

The fingerprints are the very bytes objects that Scrapy's fingerprint cache
and dupefilter hold, so remembering one costs a set slot, not a copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.core.scheduler import Scheduler
from scrapy.dupefilters import RFPDupeFilter
from scrapy.utils.misc import load_object

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class EarlyDuplicates:
    def __init__(self, crawler: Crawler):
        self.fingerprint = crawler.request_fingerprinter.fingerprint
        self.seen: set[bytes] = set()  # fingerprints the dupefilter is known to have seen
        # counted here, published at the end: a stats call per link costs more than the check
        self.dropped = 0

    @classmethod
    def for_crawler(cls, crawler: Crawler) -> EarlyDuplicates | None:
        """Only where dropping early changes nothing but the cost: Scrapy's own
        scheduler and dupefilter (another one may let duplicates through), and
        no DUPEFILTER_DEBUG (which asks to see every duplicate in the log)."""
        settings = crawler.settings
        if settings.getbool("DUPEFILTER_DEBUG"):
            return None
        if load_object(settings["SCHEDULER"]) is not Scheduler:
            return None
        if load_object(settings["DUPEFILTER_CLASS"]) is not RFPDupeFilter:
            return None
        return cls(crawler)

    def fetched_through_scheduler(self, request: Request) -> None:
        """``request`` got a response, and it came from the scheduler (it has a
        ledger key, given in request_scheduled): the dupefilter has seen it,
        unless ``dont_filter`` let it past."""
        if not request.dont_filter:
            self.seen.add(self.fingerprint(request))

    def dropped_by_dupefilter(self, fingerprint: bytes) -> None:
        """A request with this fingerprint got ``request_dropped``: the
        dupefilter has it, and will drop every later link to it."""
        self.seen.add(fingerprint)

    def drops(self, output: Any) -> bool:
        """Is ``output`` a request the dupefilter would drop? Then it is dropped now."""
        if (
            isinstance(output, Request)
            and not output.dont_filter
            and self.fingerprint(output) in self.seen
        ):
            self.dropped += 1
            return True
        return False
