"""EarlyDuplicates: drop a callback's links to pages the dupefilter has seen, at once.

A broad crawl's pages link mostly to pages seen already. Plain Scrapy sends
each such link through ``engine.crawl``, the ``request_scheduled`` signal,
the scheduler and the dupefilter, which drops it. A checkpointed crawl also
has a handler on ``request_scheduled`` and ``request_dropped``: two more
signal dispatches for every link, most of the cost of checkpointing a
link-heavy crawl.

With Scrapy's own scheduler, a request is certain to be dropped if the
dupefilter has seen its fingerprint. The add-on's dupefilter (components/
dupefilter.py) shares the set of fingerprints it has seen, which is then
exactly the set of links to drop. With Scrapy's RFPDupeFilter (a manual
set-up), we learn what it has seen: a request with that fingerprint was
fetched (the scheduler gave it to the downloader, and took it through the
dupefilter first), or was itself dropped as a duplicate (``request_dropped``:
with Scrapy's scheduler, only the dupefilter sends it there). Not when our
``request_scheduled`` handler lets a request through: a handler after ours may
still refuse it (OffsiteMiddleware does), and then the dupefilter never sees
it. Either way our spider middleware drops such a link itself, before it is
scheduled (the stat ``checkpoint/duplicates_early`` counts them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.core.scheduler import Scheduler
from scrapy.dupefilters import RFPDupeFilter
from scrapy.utils.misc import load_object

from scrapy_resume.engine.keyset import KeySet
from scrapy_resume.engine.requestmeta import KEY_META

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


#: The add-on's dupefilter (named, not imported: it is a component, above this layer)
COMPACT_DUPEFILTER = "scrapy_resume.components.dupefilter.CheckpointDupeFilter"
#: scrapy-redis's scheduler and its shared dupefilter (named: scrapy-redis is optional).
#: Its fingerprints (method, canonical URL, body) tell requests apart exactly as
#: Scrapy's default fingerprinter does, which ours must then be.
SHARED_SCHEDULER = "scrapy_redis.scheduler.Scheduler"
SHARED_DUPEFILTERS = (
    "scrapy_redis.dupefilter.RFPDupeFilter",
    "scrapy_resume.components.shareddupefilter.SharedDupeFilter",  # the add-on's
)
DEFAULT_FINGERPRINTER = "scrapy.utils.request.RequestFingerprinter"


def path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class EarlyDuplicates:
    def __init__(self, crawler: Crawler, dupefilter_seen: KeySet | None = None):
        self.fingerprint = crawler.request_fingerprinter.fingerprint
        # the dupefilter's own set (it adds to it), or what we learn of Scrapy's
        self.learning = dupefilter_seen is None
        self.seen = KeySet() if dupefilter_seen is None else dupefilter_seen
        # counted here, published at the end: a stats call per link costs more than the check
        self.dropped = 0

    @classmethod
    def for_crawler(cls, crawler: Crawler,
                    dupefilter_seen: KeySet | None = None) -> EarlyDuplicates | None:
        """Only where dropping early changes nothing but the cost: Scrapy's own
        scheduler, Scrapy's dupefilter or the add-on's (``dupefilter_seen``: its
        set; another one may let duplicates through), and no DUPEFILTER_DEBUG
        (which asks to see every duplicate in the log)."""
        settings = crawler.settings
        if settings.getbool("DUPEFILTER_DEBUG"):
            return None
        scheduler = load_object(settings["SCHEDULER"])
        dupefilter = load_object(settings["DUPEFILTER_CLASS"])
        if path_of(scheduler) == SHARED_SCHEDULER and path_of(dupefilter) in SHARED_DUPEFILTERS:
            # a fingerprint the shared dupefilter holds stays there for the run (its
            # set is only cleared at the close): learnt, as for Scrapy's
            fingerprinter = load_object(settings["REQUEST_FINGERPRINTER_CLASS"])
            return cls(crawler) if path_of(fingerprinter) == DEFAULT_FINGERPRINTER else None
        if scheduler is not Scheduler:
            return None
        if dupefilter is RFPDupeFilter:
            return cls(crawler)
        ours = path_of(dupefilter) == COMPACT_DUPEFILTER
        return cls(crawler, dupefilter_seen) if ours and dupefilter_seen is not None else None

    def fetched_through_scheduler(self, request: Request) -> None:
        """``request`` got a response, and it came from the scheduler (it has a
        ledger key, given in request_scheduled): the dupefilter has seen it,
        unless ``dont_filter`` let it past. Its ledger key is the fingerprint of
        the request first scheduled (the same fingerprinter's; a redirect keeps
        it), which the dupefilter has seen too: no second fingerprint of a
        request taken from a shared queue, a new object."""
        if self.learning and not request.dont_filter:
            key = request.meta.get(KEY_META)
            self.seen.add(key if key is not None else self.fingerprint(request))

    def dropped_by_dupefilter(self, fingerprint: bytes) -> None:
        """A request with this fingerprint got ``request_dropped``: the
        dupefilter has it, and will drop every later link to it."""
        if self.learning:
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
