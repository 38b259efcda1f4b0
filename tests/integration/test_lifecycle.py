"""Starting, refusing, resetting: what a user sees at the start of a crawl."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from scrapy.settings import Settings

from scrapy_resume import CheckpointConfig, CheckpointConfigError
from tests.crawling import REPO, graph_crawl, graph_page


def small_crawl(tmp_path, mockserver, **kwargs):
    ns = mockserver.namespace()
    return graph_crawl(tmp_path, mockserver, ns, 40, 3, **kwargs), ns


def test_existing_checkpoint_without_a_flag_refuses_and_says_what_to_type(tmp_path, mockserver):
    crawl, ns = small_crawl(tmp_path, mockserver)
    assert crawl.run().finish_reason == "finished"
    before = mockserver.hits(ns)
    refused = crawl.run()
    assert refused.finish_reason == "checkpoint_exists"
    assert "40 done, 0 pending, 0 failed" in refused.log
    # the command the user ran, here runspider's
    runspider = f"scrapy runspider {crawl.spider_file}"
    assert f"{runspider} -s CHECKPOINT_RESUME=1" in refused.log
    assert f"{runspider} -s CHECKPOINT_RESET=1" in refused.log
    assert "scrapy crawl" not in refused.log
    assert mockserver.hits(ns) == before  # not a single request sent


def test_reset_keeps_a_backup_and_starts_over(tmp_path, mockserver):
    crawl, ns = small_crawl(tmp_path, mockserver)
    crawl.run()
    again = crawl.run(CHECKPOINT_RESET="1")
    assert again.finish_reason == "finished"
    assert "starts over; the old checkpoint was moved to" in again.log
    backups = list((tmp_path / "checkpoints").glob("graph.sqlite.bak-*"))
    assert len(backups) == 1
    assert sum(mockserver.hits(ns).values()) == 2 * 40  # crawled twice, in full
    assert crawl.summary("graph").counters["runs"] == 1  # a new checkpoint


def test_resume_without_a_checkpoint_starts_fresh_and_says_so(tmp_path, mockserver):
    crawl, _ = small_crawl(tmp_path, mockserver)
    result = crawl.run(CHECKPOINT_RESUME="1")
    assert "has no checkpoint yet" in result.log and "starting a fresh crawl" in result.log
    assert result.finish_reason == "finished"
    assert crawl.summary("graph").done == 40


def test_jobdir_is_refused(tmp_path, mockserver):
    crawl, ns = small_crawl(tmp_path, mockserver)
    result = crawl.run(JOBDIR=str(tmp_path / "job"))
    assert result.finish_reason == "checkpoint_jobdir_conflict"
    assert "remove the JOBDIR setting" in result.log
    assert mockserver.hits(ns) == {}


@pytest.mark.parametrize(
    "settings, missing",
    [
        (
            {"DOWNLOADER_MIDDLEWARES": {"scrapy_resume.CheckpointMiddleware": 1}},
            # (and the cookies middleware, another DOWNLOADER_MIDDLEWARES line)
            ["DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS", "FEED_STORAGES"],
        ),
        (
            {"SPIDER_MIDDLEWARES": {"scrapy_resume.CheckpointSpiderMiddleware": 1}},
            ["DOWNLOADER_MIDDLEWARES", "EXTENSIONS", "FEED_STORAGES"],
        ),
        (
            {
                "DOWNLOADER_MIDDLEWARES": {"scrapy_resume.CheckpointMiddleware": 1},
                "SPIDER_MIDDLEWARES": {"scrapy_resume.CheckpointSpiderMiddleware": 1},
                "EXTENSIONS": {"scrapy_resume.CheckpointExtension": 0},
            },
            # the cookie jars go into the checkpoint; with -o, the feed must be
            # flushed before commits
            ["DOWNLOADER_MIDDLEWARES", "FEED_STORAGES"],
        ),
        (
            {
                "DOWNLOADER_MIDDLEWARES": {
                    "scrapy_resume.CheckpointMiddleware": 1,
                    "scrapy_resume.CheckpointCookiesMiddleware": 700,
                    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,
                },
                "SPIDER_MIDDLEWARES": {"scrapy_resume.CheckpointSpiderMiddleware": 1},
                "EXTENSIONS": {"scrapy_resume.CheckpointExtension": 0},
            },
            ["FEED_STORAGES"],
        ),
    ],
)
def test_half_enabled_set_up_refuses_naming_the_missing_lines(
    tmp_path, mockserver, settings, missing
):
    as_json = {name: json.dumps(value) for name, value in settings.items()}
    crawl, ns = small_crawl(tmp_path, mockserver, enable="off", settings=as_json)
    result = crawl.run(CHECKPOINT_ENABLED="1")
    assert result.finish_reason == "checkpoint_misconfigured"
    assert result.log.count("scrapy-resume is only partly enabled") == 1
    named = [name for name in ("DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "EXTENSIONS",
                               "FEED_STORAGES") if f"    {name} = " in result.log]
    assert named == missing
    assert 'ADDONS = {"scrapy_resume.Addon": 0}' in result.log
    assert mockserver.hits(ns) == {}


def test_corrupt_checkpoint_is_refused_and_left_untouched(tmp_path, mockserver):
    crawl, ns = small_crawl(tmp_path, mockserver)
    path = crawl.store_path("graph")
    path.parent.mkdir(parents=True)
    garbage = b"this is not a SQLite database" * 100
    path.write_bytes(garbage)
    result = crawl.run(CHECKPOINT_RESUME="1")
    assert result.finish_reason == "checkpoint_corrupt"
    assert "CHECKPOINT_RESET=1" in result.log
    assert path.read_bytes() == garbage
    assert mockserver.hits(ns) == {}
    # RESET moves the broken file aside and crawls
    assert crawl.run(CHECKPOINT_RESET="1").finish_reason == "finished"
    backups = list(path.parent.glob("graph.sqlite.bak-*"))
    assert [b.read_bytes() for b in backups] == [garbage]


@pytest.mark.parametrize("name, value, message", [
    ("CHECKPOINT_COMMIT_INTERVAL", "soon", "CHECKPOINT_COMMIT_INTERVAL='soon' is not a positive"),
    ("CHECKPOINT_RESUME", "yes", "CHECKPOINT_RESUME='yes' is not a boolean"),
    ("CHECKPOINT_ENABLED", "on", "CHECKPOINT_ENABLED='on' is not a boolean"),
    ("CHECKPOINT_COOKIES", "maybe", "CHECKPOINT_COOKIES='maybe' is not a boolean"),
    ("CHECKPOINT_FRONTIER_MEMORY", "lots",
     "CHECKPOINT_FRONTIER_MEMORY='lots' is not a positive whole number"),
])
def test_bad_setting_value_stops_the_crawl_with_a_clear_error(
    tmp_path, mockserver, name, value, message
):
    crawl, ns = small_crawl(tmp_path, mockserver, overwrite=True)
    crawl.feed.write_text('{"kept": 1}\n')
    result = crawl.run(**{name: value})
    assert result.finish_reason == "checkpoint_misconfigured"
    assert result.log.count(message) == 1
    assert "Traceback" not in result.log  # one clear message, not a task's traceback
    assert mockserver.hits(ns) == {}
    assert crawl.feed.read_text() == '{"kept": 1}\n'  # -O did not wipe it


def test_disabled_package_is_not_configured(tmp_path, mockserver):
    crawl, ns = small_crawl(tmp_path, mockserver, enable="off")
    result = crawl.run()
    assert result.finish_reason == "finished"
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("CHECKPOINT_RESUME", "maybe", "CHECKPOINT_RESUME='maybe' is not a boolean"),
        ("CHECKPOINT_COMMIT_INTERVAL", "0", "CHECKPOINT_COMMIT_INTERVAL='0' is not a positive"),
        ("CHECKPOINT_PROGRESS_INTERVAL", "-1", "CHECKPOINT_PROGRESS_INTERVAL='-1' is not a"),
        ("CHECKPOINT_STAGE", "../etc", "CHECKPOINT_STAGE='../etc' is not a valid stage name"),
    ],
)
def test_config_rejects_bad_values(name, value, message):
    with pytest.raises(CheckpointConfigError, match=message.replace("(", r"\(")):
        CheckpointConfig.from_settings(Settings({name: value}))


def test_config_defaults_and_parsing():
    config = CheckpointConfig.from_settings(
        Settings({"CHECKPOINT_ENABLED": "1", "CHECKPOINT_DIR": "/tmp/x", "CHECKPOINT_STAGE": "v2",
                  "CHECKPOINT_INPUT_FILES": "a.jsonl,b.jsonl", "CHECKPOINT_FSYNC": "true"})
    )
    assert (config.enabled, config.resume, config.reset, config.fsync) == (True, False, False, True)
    assert config.commit_interval == 0.5 and config.progress_interval == 60.0
    assert config.input_files == ("a.jsonl", "b.jsonl")
    assert str(config.stage_path("ignored")) == "/tmp/x/v2.sqlite"
    assert CheckpointConfig.from_settings(Settings()).stage_name("discovery") == "discovery"


SCRIPT = """
import sys
from scrapy.crawler import CrawlerProcess
from tests.spiders.graph import GraphSpider

process = CrawlerProcess({{
    "ADDONS": {{"scrapy_resume.Addon": 0}},
    "CHECKPOINT_DIR": {directory!r},
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "INFO",
}})
process.crawl(GraphSpider, start={start!r})
process.start()
"""


def test_a_script_is_refused_with_what_to_change_in_its_settings(tmp_path, mockserver):
    ns = mockserver.namespace()
    script = tmp_path / "crawl_shop.py"
    script.write_text(SCRIPT.format(directory=str(tmp_path / "checkpoints"),
                                    start=mockserver.url(graph_page(ns, 40, 3))))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run() -> str:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        return done.stdout + done.stderr

    assert "Spider closed (finished)" in run()
    refused = run()
    assert "Spider closed (checkpoint_exists)" in refused
    assert f"to continue it:   python {script} with CHECKPOINT_RESUME=True in the settings" in (
        refused
    )
    assert "-s CHECKPOINT" not in refused and "scrapy crawl" not in refused
