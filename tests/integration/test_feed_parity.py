"""Scrapy's feed behaviour is unchanged with scrapy-resume: for each feed option,
a checkpointed crawl writes the same files, byte for byte, logs the same
"Stored ..." lines and counts the same feedexport stats as plain Scrapy.

One callback yields every item, so they are committed together, in export
order: the files of the two crawls can be compared byte for byte.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.crawling import Crawl

SPIDERS = "tests.spiders.many_items"

CASES = {
    "fields": ({"out.csv": {"format": "csv", "fields": ["n", "title"]}}, {}),
    "export kwargs": ({"out.xml": {"format": "xml", "item_export_kwargs": {
        "root_element": "products", "item_element": "product"}}}, {}),
    "json export kwargs": ({"out.json": {"format": "json", "item_export_kwargs": {
        "sort_keys": True}}}, {}),
    "item classes": ({"offers.json": {"format": "json", "item_classes": [f"{SPIDERS}.Offer"]},
                      "all.jsonl": {"format": "jsonlines"}}, {}),
    "item filter": ({"even.xml": {"format": "xml", "item_filter": f"{SPIDERS}.EvenItems"}}, {}),
    "uri params": ({"out-%(shop)s-%(name)s.jsonl": {"format": "jsonlines",
                                                     "uri_params": f"{SPIDERS}.shop_params"}},
                   {}),
    "store empty": ({"none.json": {"format": "json", "item_classes": ["decimal.Decimal"],
                                   "store_empty": True},
                     "none.csv": {"format": "csv", "item_classes": ["decimal.Decimal"],
                                  "store_empty": True}}, {}),
    "store empty, batched": ({"none-%(batch_id)d.json": {
        "format": "json", "item_classes": ["decimal.Decimal"], "batch_item_count": 10}}, {}),
    "FEED_STORE_EMPTY off": ({"none.json": {"format": "json",
                                            "item_classes": ["decimal.Decimal"]}},
                             {"FEED_STORE_EMPTY": "False"}),
    "FEED_EXPORT_FIELDS": ({"out.json": {"format": "json"}},
                           {"FEED_EXPORT_FIELDS": json.dumps(["title", "url"])}),
    "overwrite an old file": ({"old.jsonl": {"format": "jsonlines", "overwrite": True}}, {}),
    "append to an old file": ({"old.csv": {"format": "csv"}}, {}),
}


def crawl_with(workdir, mockserver, ns, enable: str, feeds: dict, settings: dict):
    workdir.mkdir()
    for name in ("old.jsonl", "old.csv"):  # what an earlier crawl left there
        (workdir / name).write_bytes(b"an old line\n")
    crawl = Crawl(workdir, "many_items", enable=enable, feed=None,
                  settings={"FEEDS": json.dumps(feeds), **settings},
                  args={"start": mockserver.url(f"{ns}/status/200"), "items": "25"})
    result = crawl.run()
    assert result.finish_reason == "finished"
    files = {path.name: path.read_bytes() for path in workdir.iterdir()
             if path.is_file() and path.suffix not in (".log", ".json") or path.name in
             [name for name in feeds]}
    stored = sorted(re.findall(r"Stored (\w+ feed \(\d+ items\) in: \S+)", result.log))
    stats = {k: v for k, v in result.stats.items() if k.startswith("feedexport/")}
    return files, stored, stats


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_feed_option_behaves_as_in_plain_scrapy(tmp_path, mockserver, case):
    feeds, settings = CASES[case]
    ns = mockserver.namespace()
    plain = crawl_with(tmp_path / "plain", mockserver, ns, "off", feeds, settings)
    checkpointed = crawl_with(tmp_path / "addon", mockserver, ns, "addon", feeds, settings)
    assert checkpointed == plain
    files, stored, stats = plain
    if case == "FEED_STORE_EMPTY off":
        assert (stored, stats) == ([], {}) and "none.json" not in files
    else:
        assert stored and stats  # the case did export something, or store an empty feed
