"""The scheduler queues that keep a bounded number of requests in memory pop
in exactly the order of Scrapy's own memory queues, whatever the budget."""

from __future__ import annotations

import random

import pytest
import scrapy
from scrapy.squeues import FifoMemoryQueue, LifoMemoryQueue
from scrapy.utils.test import get_crawler

from scrapy_resume.components.spillqueue import SpillingFifoQueue, SpillingLifoQueue
from scrapy_resume.engine.batching import CallbackNames
from scrapy_resume.engine.spill import Spill


class Spider(scrapy.Spider):
    name = "spill"

    def parse_page(self, response):
        pass


def spilling(queue_class, tmp_path, limit: int):
    crawler = get_crawler(Spider)
    crawler.spider = Spider.from_crawler(crawler)
    queue = queue_class(crawler)
    queue.spill = Spill(crawler, tmp_path / "spill", limit, CallbackNames())
    queue.looked_up = True
    return queue


@pytest.mark.parametrize("ours, scrapys", [(SpillingLifoQueue, LifoMemoryQueue),
                                           (SpillingFifoQueue, FifoMemoryQueue)])
@pytest.mark.parametrize("limit", [1, 300, 2500])
def test_the_order_is_scrapys_whatever_the_budget(tmp_path, ours, scrapys, limit):
    queue = spilling(ours, tmp_path, limit)
    plain = scrapys.from_crawler(get_crawler(Spider), "")
    rng = random.Random(f"{ours.__name__}-{limit}")
    popped, expected, n = [], [], 0
    for _ in range(2500):  # pushes and pops interleaved, more pushes than pops
        if rng.random() < 0.6:
            request = scrapy.Request(f"http://example.com/{n}", meta={"n": n},
                                     callback=queue.crawler.spider.parse_page)
            queue.push(request)
            plain.push(request)
            n += 1
        else:
            popped.append(getattr(queue.pop(), "url", None))
            expected.append(getattr(plain.pop(), "url", None))
        assert len(queue) == len(plain)
        assert queue.spill.in_memory <= limit + 1  # (the request just pushed)
    while plain:
        popped.append(queue.pop().url)
        expected.append(plain.pop().url)
    assert popped == expected
    assert queue.pop() is None and len(queue) == 0
    if limit < 2500:  # the budget was exceeded: requests went through the file
        assert queue.disk is not None
    queue.close()


def test_a_request_that_cannot_be_serialized_stays_in_memory(tmp_path):
    queue = spilling(SpillingLifoQueue, tmp_path, 1)
    for n in range(3):
        queue.push(scrapy.Request(f"http://example.com/{n}", callback=lambda r: None))
    assert (queue.spill.on_disk, len(queue.memory)) == (0, 3)
    assert [queue.pop().url for _ in range(3)] == [f"http://example.com/{n}" for n in (2, 1, 0)]


@pytest.mark.parametrize("ours, scrapys", [(SpillingLifoQueue, LifoMemoryQueue),
                                           (SpillingFifoQueue, FifoMemoryQueue)])
def test_under_scrapys_priority_queue_priorities_come_first_as_in_scrapy(tmp_path, ours, scrapys):
    from scrapy.pqueues import ScrapyPriorityQueue

    crawler = get_crawler(Spider)
    crawler.spider = Spider.from_crawler(crawler)
    spill = Spill(crawler, tmp_path / "spill", 20, CallbackNames())

    class Downstream(ours):  # one budget for every priority's queue, as in a crawl
        def _spill(self):
            self.spill = spill
            return spill

    queue = ScrapyPriorityQueue.from_crawler(crawler, Downstream, "")
    plain = ScrapyPriorityQueue.from_crawler(get_crawler(Spider), scrapys, "")
    rng = random.Random(ours.__name__)
    popped, expected = [], []
    for n in range(3000):
        if rng.random() < 0.65:
            request = scrapy.Request(f"http://example.com/{n}", priority=rng.randint(-3, 3),
                                     callback=crawler.spider.parse_page)
            queue.push(request)
            plain.push(request)
        else:
            popped.append(getattr(queue.pop(), "url", None))
            expected.append(getattr(plain.pop(), "url", None))
    while len(plain):
        popped.append(queue.pop().url)
        expected.append(plain.pop().url)
    assert popped == expected and len(queue) == 0
    assert spill.written > 100 and spill.in_memory == spill.on_disk == 0
