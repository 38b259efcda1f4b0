"""Requests are serialized with Request.to_dict(); CallbackNames only makes it cheaper."""

from __future__ import annotations

import pytest
import scrapy
from scrapy import Request
from scrapy.utils.request import request_from_dict

from scrapy_resume.engine.batching import CallbackNames


class Spider(scrapy.Spider):
    name = "names"

    def parse(self, response):
        pass

    def on_error(self, failure):
        pass

    alias = parse


def test_callback_names_restore_the_same_callbacks_as_the_spider_would():
    spider, names = Spider(), CallbackNames()
    requests = [
        Request("http://x/1"),
        Request("http://x/2", callback=spider.parse),
        Request("http://x/3", callback=spider.alias, errback=spider.on_error),
        Request("http://x/4", errback=spider.on_error),
    ]
    for request in requests * 2:  # the second time, from the cache
        fast = request_from_dict(request.to_dict(spider=names.holder(spider, request)), spider=spider)
        slow = request_from_dict(request.to_dict(spider=spider), spider=spider)
        assert (fast.callback, fast.errback) == (slow.callback, slow.errback)
        assert fast.to_dict(spider=spider) == slow.to_dict(spider=spider)


def test_a_callback_that_is_not_a_spider_method_still_cannot_be_serialized():
    spider, names = Spider(), CallbackNames()
    request = Request("http://x/1", callback=lambda response: None)
    with pytest.raises(ValueError, match="is not an instance method"):
        request.to_dict(spider=names.holder(spider, request))
    assert names.holders == {}  # nothing cached: a callback like this is new each time
