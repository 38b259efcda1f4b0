"""The compact set of request keys, and the dupefilter that keeps its
fingerprints in one: the same answers as a Python set and as Scrapy's
RFPDupeFilter, in less memory."""

from __future__ import annotations

import hashlib
import random

import pytest
import scrapy
from scrapy.dupefilters import RFPDupeFilter
from scrapy.utils.test import get_crawler

from scrapy_resume import Addon
from scrapy_resume.components.dupefilter import CheckpointDupeFilter
from scrapy_resume.components.lookup import runtime_of
from scrapy_resume.engine.keyset import KeySet
from scrapy_resume.lifecycle.validation import crawl_config, differences


def test_a_keyset_answers_as_a_set_does():
    rng = random.Random("keyset")
    keys = [rng.randbytes(20) for _ in range(50_000)]
    # keys of other lengths (another fingerprinter) are hashed to 20 bytes first
    keys += [rng.randbytes(rng.choice([8, 16, 32])) for _ in range(2_000)]
    keyset, plain = KeySet(), set()
    for key in keys + keys[:10_000]:  # 10,000 added twice
        assert keyset.add(key) == (key not in plain)
        plain.add(key)
    assert len(keyset) == len(plain) == 52_000
    assert all(key in keyset for key in keys)
    others = [rng.randbytes(20) for _ in range(50_000)]
    assert not any(key in keyset for key in others)


def test_a_match_across_two_keys_of_a_bucket_is_not_a_key():
    head = b"\x01\x02"  # one bucket
    first, second = b"a" * 18, b"b" * 18
    keyset = KeySet([head + first, head + second])
    straddling = head + first[9:] + second[:9]  # found in the bucket, at offset 9
    assert straddling not in keyset
    assert keyset.add(straddling) is True
    assert straddling in keyset and len(keyset) == 3


def test_the_memory_of_a_key_is_far_below_a_sets():
    keyset = KeySet(hashlib.sha1(str(n).encode()).digest() for n in range(200_000))
    stored = sum(len(bucket) for bucket in keyset.buckets if bucket is not None)
    assert stored == 200_000 * 18  # the first two bytes of a key choose its bucket


def test_the_dupefilter_answers_as_scrapys():
    crawler = get_crawler(scrapy.Spider)
    ours, scrapys = (cls.from_crawler(crawler) for cls in (CheckpointDupeFilter, RFPDupeFilter))
    rng = random.Random("dupefilter")
    drawn = set()
    for _ in range(5_000):
        url, method = f"http://example.com/{rng.randrange(2_000)}", rng.choice(["GET", "POST"])
        request = scrapy.Request(url, method=method)
        assert ours.request_seen(request) == scrapys.request_seen(request) == ((url, method)
                                                                               in drawn)
        drawn.add((url, method))
    assert len(ours.seen) == len(drawn)


def test_with_a_jobdir_the_dupefilter_is_scrapys_with_its_file(tmp_path):
    # (a checkpointed crawl refuses JOBDIR; on its own the class still honours it)
    crawler = get_crawler(scrapy.Spider, {"JOBDIR": str(tmp_path)})
    dupefilter = CheckpointDupeFilter.from_crawler(crawler)
    request = scrapy.Request("http://example.com/a")
    assert dupefilter.request_seen(request) is False
    assert dupefilter.request_seen(request) is True
    dupefilter.close("finished")
    assert (tmp_path / "requests.seen").stat().st_size > 0
    assert RFPDupeFilter.from_crawler(crawler).request_seen(request) is True


@pytest.mark.parametrize("configured, expected", [
    (None, "scrapy_resume.components.dupefilter.CheckpointDupeFilter"),
    ("scrapy.dupefilters.RFPDupeFilter",
     "scrapy_resume.components.dupefilter.CheckpointDupeFilter"),
    (RFPDupeFilter, "scrapy_resume.components.dupefilter.CheckpointDupeFilter"),
    ("scrapy.dupefilters.BaseDupeFilter", "scrapy.dupefilters.BaseDupeFilter"),
    ("scrapy_redis.dupefilter.RFPDupeFilter", "scrapy_redis.dupefilter.RFPDupeFilter"),
])
def test_the_addon_puts_its_dupefilter_in_the_place_of_scrapys_only(tmp_path, configured,
                                                                     expected):
    settings = {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)}
    if configured is not None:
        settings["DUPEFILTER_CLASS"] = configured
    crawler = get_crawler(scrapy.Spider, settings)
    assert crawler.settings.get("DUPEFILTER_CLASS") == expected


def test_the_addon_puts_its_shared_dupefilter_in_the_place_of_scrapy_redis_s(tmp_path):
    def dupefilter(scheduler, configured):
        crawler = get_crawler(scrapy.Spider, {
            "ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path), "SCHEDULER": scheduler,
            "DUPEFILTER_CLASS": configured,
        })
        return crawler.settings.get("DUPEFILTER_CLASS")

    redis_scheduler = "scrapy_redis.scheduler.Scheduler"
    assert dupefilter(redis_scheduler, "scrapy_redis.dupefilter.RFPDupeFilter") == (
        "scrapy_resume.SharedDupeFilter")
    own = "tests.spiders.common.OwnDupeFilter"  # a project's own is left alone
    assert dupefilter(redis_scheduler, own) == own


def test_a_stage_begun_with_scrapy_redis_s_dupefilter_resumes_with_the_addons(tmp_path):
    redis_settings = {"SCHEDULER": "scrapy_redis.scheduler.Scheduler",
                      "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter"}

    def config(settings):
        crawler = get_crawler(scrapy.Spider, {**redis_settings, **settings})
        return crawl_config(scrapy.Spider("s"), crawler.settings, ())

    manual = config({"SCHEDULER_QUEUE_CLASS": "scrapy_resume.LeasedPriorityQueue"})
    addon = config({"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)})
    assert addon["settings"]["DUPEFILTER_CLASS"] == "scrapy_redis.dupefilter.RFPDupeFilter"
    assert differences(manual, addon) == []


def test_the_dupefilter_shares_its_fingerprints_with_the_runtime(tmp_path):
    crawler = get_crawler(scrapy.Spider, {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)})
    dupefilter = CheckpointDupeFilter.from_crawler(crawler)
    assert runtime_of(crawler).fingerprints_seen is dupefilter.seen


def test_a_stage_begun_with_scrapys_dupefilter_resumes_with_the_addons(tmp_path):
    def config(settings):
        crawler = get_crawler(scrapy.Spider, settings)
        return crawl_config(scrapy.Spider("s"), crawler.settings, ())

    manual = config({"DUPEFILTER_CLASS": "scrapy.dupefilters.RFPDupeFilter"})
    addon = config({"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path)})
    assert addon["settings"]["DUPEFILTER_CLASS"] == "scrapy.dupefilters.RFPDupeFilter"
    assert differences(manual, addon) == []
    other = config({"DUPEFILTER_CLASS": "scrapy.dupefilters.BaseDupeFilter"})
    assert differences(manual, other) == [
        "setting DUPEFILTER_CLASS: 'scrapy.dupefilters.RFPDupeFilter' then,"
        " 'scrapy.dupefilters.BaseDupeFilter' now"
    ]


@pytest.mark.parametrize("settings, learning", [
    ({}, None),  # the add-on's dupefilter: its own set
    ({"SCHEDULER": "scrapy_redis.scheduler.Scheduler",
      "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter"}, True),
    ({"SCHEDULER": "scrapy_redis.scheduler.Scheduler",
      "DUPEFILTER_CLASS": "scrapy_resume.SharedDupeFilter"}, True),  # the add-on's
    ({"SCHEDULER": "scrapy_redis.scheduler.Scheduler",
      "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
      # another fingerprinter may merge requests that scrapy-redis's tells apart: off
      "REQUEST_FINGERPRINTER_CLASS": "tests.unit.test_keyset.CoarseFingerprinter"}, "off"),
    ({"DUPEFILTER_DEBUG": True}, "off"),
])
def test_early_duplicates_learn_only_where_a_seen_fingerprint_is_dropped(tmp_path, settings,
                                                                           learning):
    from scrapy_resume.engine.duplicates import EarlyDuplicates

    crawler = get_crawler(scrapy.Spider, {"ADDONS": {Addon: 0}, "CHECKPOINT_DIR": str(tmp_path),
                                          **settings})
    seen = KeySet()
    duplicates = EarlyDuplicates.for_crawler(crawler, seen)
    if learning == "off":
        assert duplicates is None
    elif learning:
        assert duplicates.learning and duplicates.seen is not seen
    else:
        assert not duplicates.learning and duplicates.seen is seen


class CoarseFingerprinter:
    def fingerprint(self, request):
        return hashlib.sha1(request.url.split("?")[0].encode()).digest()
