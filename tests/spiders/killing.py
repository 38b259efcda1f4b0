"""A dupefilter that SIGKILLs its process in the window between scrapy-redis's
dupefilter and its queue: right after it answered "new" for its N-th new request
(``TEST_KILL_AFTER_NEW=N``), before the scheduler pushes that request. Named by
its path in DUPEFILTER_CLASS only where a test asks: it imports scrapy-redis."""

from __future__ import annotations

import os
import signal

from scrapy_resume import SharedDupeFilter


class KillingDupeFilter(SharedDupeFilter):
    @classmethod
    def from_spider(cls, spider):
        dupefilter = super().from_spider(spider)
        dupefilter.kill_after = spider.settings.getint("TEST_KILL_AFTER_NEW")
        dupefilter.new_seen = 0
        return dupefilter

    def request_seen(self, request) -> bool:
        seen = super().request_seen(request)
        if not seen:
            self.new_seen += 1
            if self.new_seen == self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return seen
