"""Direct tests of pieces the crawls exercise only as a whole."""

from __future__ import annotations

import hashlib
from array import array

import pytest
import scrapy
from scrapy.settings import Settings
from scrapy.utils.conf import feed_complete_default_values_from_settings

from scrapy_resume.components import progress
from scrapy_resume.components.feedformats import check_feeds, framing_for
from scrapy_resume.components.progress import Progress, format_duration
from scrapy_resume.components.stagefeeds import FeedChanged, StageFeeds
from scrapy_resume.engine.framing import Framing
from scrapy_resume.lifecycle.stage import HowTo
from scrapy_resume.lifecycle.validation import differences
from scrapy_resume.store.records import KeyIndex, StageSummary


def key(n: int) -> bytes:
    return hashlib.sha1(str(n).encode()).digest()


def index_of(keys: list[bytes], confirmed: set[bytes]) -> KeyIndex:
    return KeyIndex(array("Q", (KeyIndex.prefix(k) for k in keys)), confirmed.__contains__)


def test_key_index_answers_exactly_and_asks_the_store_only_on_a_prefix_match():
    keys = [key(n) for n in range(1000)]
    asked = []

    def confirm(k: bytes) -> bool:
        asked.append(k)
        return k in set(keys)

    index = KeyIndex(array("Q", (KeyIndex.prefix(k) for k in reversed(keys))), confirm)
    assert len(index) == 1000
    assert all(k in index for k in keys)  # unsorted input is sorted
    assert asked == keys
    asked.clear()
    assert not any(key(n) in index for n in range(1000, 2000))
    assert asked == []  # no prefix matched: the store was not asked
    # a key sharing a prefix with a known one: the store decides
    twin = keys[0][:8] + b"\xff" * 12
    assert twin not in index and asked == [twin]


def test_key_index_of_nothing_and_of_short_keys():
    assert b"anything" not in index_of([], set())
    short = [b"a", b"ab"]
    index = index_of(short, set(short))
    assert b"a" in index and b"ab" in index and b"b" not in index


def test_differences_name_every_change_and_hide_secret_values():
    recorded = {
        "arguments": {"category": "books", "api_token": "sha256:" + "0" * 64},
        "settings": {"DEPTH_LIMIT": 2},
        "input_files": {"urls.txt": "a" * 64, "gone.txt": "b" * 64},
    }
    current = {
        "arguments": {"category": "games", "api_token": "another"},
        "settings": {"DEPTH_LIMIT": 2, "CLOSESPIDER_ITEMCOUNT": 10},
        "input_files": {"urls.txt": "c" * 64, "new.txt": "d" * 64},
    }
    assert differences(recorded, current) == [
        "spider argument api_token: changed (its value is not shown)",
        "spider argument category: 'books' then, 'games' now",
        "setting CLOSESPIDER_ITEMCOUNT: unset then, 10 now",
        "input file gone.txt: listed then, not listed now",
        "input file new.txt: not listed then, listed now",
        f"input file urls.txt: its content changed (sha256 {'a' * 12} then, {'c' * 12} now)",
    ]
    assert differences(recorded, recorded) == []


def summary(**counts: int) -> StageSummary:
    values = {"pending": 0, "done": 0, "failed": 0, "dropped": 0, **counts}
    return StageSummary("discovery", "shop", "running", 0.0, 0.0, counters={}, **values)


def test_progress_line_rate_eta_and_success(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = Progress("discovery")
    clock[0] = 110.0  # 10 s later, 400 settled by this run
    line = bar.line(summary(pending=6000, done=3900, failed=100), 400, last_commit=109.5)
    assert line == (
        "Checkpoint discovery: 40.0% (4,000/10,000 requests) | ok 97.5% | 40.0 req/s | "
        "ETA 2m30s | committed 0.5s ago"
    )
    clock[0] = 120.0  # nothing settled in the last 10 s: the window still holds the first 400
    line = bar.line(summary(pending=6000, done=3900, failed=100), 400, last_commit=0.0)
    assert "20.0 req/s" in line and "ETA 5m00s" in line and "committed not yet" in line


def test_progress_line_of_a_stage_with_nothing_judged_yet(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", lambda: 5.0)
    line = Progress("s").line(summary(pending=3), 0, last_commit=0.0)
    assert line == (
        "Checkpoint s: 0.0% (0/3 requests) | ok - | 0.0 req/s | ETA unknown | committed not yet"
    )


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (0, 59, 60, 3599, 3600, 86399, 86400, 200000)] == [
        "0s", "59s", "1m00s", "59m59s", "1h00m", "23h59m", "1d0h", "2d7h",
    ]


def feed_check(feeds: dict, **settings) -> tuple[list[str], list[str]]:
    return check_feeds(Settings({"FEEDS": feeds, "FEED_EXPORTERS": NUMBERED, **settings}))


def test_line_and_document_feeds_pass_the_feed_check():
    assert feed_check({"a.jsonl": {"format": "jsonlines"}, "b.csv": {"format": "csv"},
                       "file:///tmp/c.pickle": {"format": "pickle"}, "d.json": {},
                       "e.xml": {"format": "xml", "item_export_kwargs": {"root_element": "r"}},
                       }) == ([], [])


NUMBERED = {"numbered": "tests.spiders.common.NumberedLinesExporter"}


@pytest.mark.parametrize("settings, framing", [
    ({}, Framing("document", b"[\n", b",\n", b"\n]")),
    ({"FEED_EXPORT_INDENT": None}, Framing("document", b"[", b",", b"]")),
    ({"FEED_EXPORT_INDENT": 2}, Framing("document", b"[\n", b",\n", b"\n]")),
])
def test_a_json_array_is_framed_as_its_exporter_writes_it(settings, framing):
    settings = Settings(settings)
    options = feed_complete_default_values_from_settings({}, settings, "items.json")
    assert framing_for(settings, options) == framing


def test_an_xml_document_is_framed_with_its_own_root_and_encoding():
    settings = Settings({"FEED_EXPORT_ENCODING": "latin-1"})
    options = feed_complete_default_values_from_settings(
        {"item_export_kwargs": {"root_element": "products"}}, settings, "items.xml"
    )
    assert framing_for(settings, options) == Framing(
        "document", b'<?xml version="1.0" encoding="latin-1"?>\n<products>\n', b"",
        b"</products>",
    )


def test_the_feed_check_names_each_problem_and_the_fix():
    problems, warnings = feed_check({
        "items.txt": {"format": "numbered"},
        "parts.jsonl": {"format": "jsonlines", "batch_item_count": 100},
        "packed.jsonl": {"format": "jsonlines", "postprocessing": ["tests.spiders.common.Rot13"]},
        "old.jsonl.lzma": {"format": "jsonlines", "lzma_format": 2,  # lzma.FORMAT_ALONE
                           "postprocessing": ["scrapy.extensions.postprocessing.LZMAPlugin"]},
        "packed.jsonl.gz": {"format": "jsonlines",
                            "postprocessing": ["scrapy.extensions.postprocessing.GzipPlugin"]},
        "s3://bucket/items.jsonl": {"format": "jsonlines"},
        "ftp://host/items-%(batch_id)d.jsonl": {"format": "jsonlines", "batch_item_count": 9},
    })
    assert problems == [
        "Feed items.txt uses the 'numbered' format, which cannot be resumed exactly-once: "
        "NumberedLinesExporter does not write each item as one record with a fixed separator, "
        "so a file cannot be cut back to an item and continued. Use a line format, e.g. "
        "-o items.jsonl (or .csv).",
        "Feed packed.jsonl cannot be resumed exactly-once: its post-processing plugin Rot13 is "
        "not one of Scrapy's GzipPlugin, Bz2Plugin or LZMAPlugin, whose compressed streams can "
        "be concatenated. Write a plain file and compress it when the stage is completed.",
        "Feed old.jsonl.lzma cannot be resumed exactly-once: LZMAPlugin writes lzma_format 2; "
        "only the .xz format (the default) can be concatenated. Write a plain file and compress "
        "it when the stage is completed.",
    ]
    assert warnings == [
        "Feed s3://bucket/items.jsonl is uploaded as a whole when the crawl closes: a crash "
        "before then loses its items (their requests are done, and are not fetched again). Give "
        "it batches (batch_item_count in its FEEDS options, or FEED_EXPORT_BATCH_ITEM_COUNT, and "
        "%(batch_id)d in its URI): scrapy-resume then uploads each batch once, when it is "
        "complete and committed. Or write a local .jsonl file.",
        "Feed ftp://host/items-%(batch_id)d.jsonl is batched, but uploaded by "
        "scrapy.extensions.feedexport.FTPFeedStorage, not by scrapy-resume's storage: a crash "
        "loses the batch being filled, and a resume uploads over earlier batches. Set "
        'FEED_STORAGES = {"ftp": "scrapy_resume.ResumableFTPFeedStorage"} (the add-on does it '
        "for Scrapy's own storages).",
    ]
    # with the storage the add-on installs, a batched remote feed is exactly-once
    remote = Settings({"FEEDS": {"ftp://host/items-%(batch_id)d.json": {"format": "json"}},
                       "FEED_EXPORT_BATCH_ITEM_COUNT": 10,
                       "FEED_STORAGES": {"ftp": "scrapy_resume.ResumableFTPFeedStorage"}})
    assert check_feeds(remote) == ([], [])
    # batches are refused only on a shared stage; the project-wide setting counts too
    settings = Settings({"FEEDS": {"a-%(batch_id)d.jsonl": {"format": "jsonlines"}},
                         "FEED_EXPORT_BATCH_ITEM_COUNT": 10})
    assert check_feeds(settings) == ([], [])
    problems, _ = check_feeds(settings, shared=True)
    assert len(problems) == 1 and "would number their batches over each other" in problems[0]


def stage_feeds(directory, *feeds: str) -> StageFeeds:
    settings = Settings({"FEEDS": {feed: {"format": "jsonlines"} for feed in feeds}})
    how = HowTo(resume="R", reset="X", reset_option="-s CHECKPOINT_RESET=1", retry="T")
    return StageFeeds(directory, settings, scrapy.Spider("shop"), how)


def test_a_resume_must_write_to_the_feeds_the_stage_committed_to(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "ckpt"
    summary = StageSummary("shop", "shop", "paused", 0.0, 0.0, pending=2, done=40, failed=0,
                           dropped=0, counters={})
    committed = {"../items.jsonl": 1234}  # keys are relative to the checkpoint directory
    stage_feeds(ckpt, "items.jsonl").check_same_files("shop", committed, summary)
    stage_feeds(ckpt, "%(name)s/../items.jsonl").check_same_files("shop", committed, summary)
    assert caplog.records == []
    with pytest.raises(FeedChanged) as refused:
        stage_feeds(ckpt, "other.jsonl").check_same_files("shop", committed, summary)
    assert str(refused.value) == (
        f"Stage shop committed its items to {tmp_path / 'items.jsonl'}, but this run writes "
        f"to {tmp_path / 'other.jsonl'}: the items would be split between files. Resume with "
        f"the same feed (-o items.jsonl), or start the stage over with -s CHECKPOINT_RESET=1."
    )
    with pytest.raises(FeedChanged, match="but this run writes to no feed"):
        stage_feeds(ckpt).check_same_files("shop", committed, summary)
    # a second feed added on resume: allowed, with a warning that it misses the first 40 items
    stage_feeds(ckpt, "items.jsonl", "more.csv").check_same_files("shop", committed, summary)
    [warning] = caplog.records
    assert warning.getMessage() == (
        f"Feed {tmp_path / 'more.csv'} is new to stage shop: it will hold only the items of "
        f"requests done from now on, not those of the 40 requests done before"
    )
    # a file named by the time is new every run: nothing to compare
    stage_feeds(ckpt, "items-%(time)s.jsonl").check_same_files("shop", committed, summary)
