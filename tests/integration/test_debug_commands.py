"""Scrapy's debugging commands run a project's spiders as plain Scrapy.

With the add-on in a project's settings, ``scrapy fetch``, ``shell``, ``parse``,
``check`` and ``bench`` must never create, change or refuse a stage: only
``crawl`` and ``runspider`` (and scripts) checkpoint. Real commands, in a real
project, against the mock server. This also guards the one place that reads
Scrapy's call stack (``scrapy_resume.components.launcher``): if Scrapy changes how its
commands start crawlers, these tests fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.crawling import REPO

SIZE = 40

SPIDER = '''
import scrapy


class PagesSpider(scrapy.Spider):
    name = "pages"
    start_urls = [{start!r}]

    def parse(self, response):
        """
        @url {start}
        @returns items 1 1
        """
        yield {{"url": response.url}}
        yield from response.follow_all(css="a")
'''


@pytest.fixture
def project(tmp_path, mockserver):
    """A Scrapy project with the add-on in its settings, and one spider, pages."""
    start = mockserver.url(f"{mockserver.namespace()}/g/{SIZE}/3/0")
    root = tmp_path / "shop"
    (root / "shop" / "spiders").mkdir(parents=True)
    (root / "scrapy.cfg").write_text("[settings]\ndefault = shop.settings\n")
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "spiders" / "__init__.py").write_text("")
    (root / "shop" / "settings.py").write_text(textwrap.dedent("""
        BOT_NAME = "shop"
        SPIDER_MODULES = ["shop.spiders"]
        ADDONS = {"scrapy_resume.Addon": 0}
        TELNETCONSOLE_ENABLED = False
        CHECKPOINT_COMMIT_INTERVAL = 0.2
    """))
    (root / "shop" / "spiders" / "pages.py").write_text(SPIDER.format(start=start))
    return root, start


def scrapy(root, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "scrapy.cmdline", *args], cwd=root, env=env,
        capture_output=True, text=True, timeout=120,
    )


def stages(root) -> list[str]:
    directory = root / ".scrapy" / "checkpoints"
    return sorted(p.name for p in directory.glob("*.sqlite")) if directory.exists() else []


def test_fetch_and_shell_never_checkpoint(project):
    root, start = project
    for _ in range(2):  # the second time is where a checkpoint would refuse
        fetched = scrapy(root, "fetch", "--nolog", start)
        assert fetched.returncode == 0, fetched.stderr
        assert "<title>page 0</title>" in fetched.stdout
        shell = scrapy(root, "shell", "--nolog", "-c", "response.status", start)
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout.strip() == "200"
        assert "CloseSpider" not in shell.stderr
    assert stages(root) == []


def test_parse_and_check_leave_the_stage_of_their_spider_alone(project):
    root, start = project
    for _ in range(2):
        parsed = scrapy(root, "parse", "--spider=pages", start)
        assert parsed.returncode == 0, parsed.stderr
        assert f"{{'url': '{start}'}}" in parsed.stdout and "Requests" in parsed.stdout
        checked = scrapy(root, "check", "pages")
        assert checked.returncode == 0, checked.stderr
        assert "Ran 1 contract" in checked.stderr and "OK" in checked.stderr
    assert stages(root) == []
    # the real crawl of that spider then fetches every page, and checkpoints
    crawled = scrapy(root, "crawl", "pages", "-o", "items.jsonl", "-s", "CHECKPOINT_RESUME=1")
    assert crawled.returncode == 0, crawled.stderr
    assert "Spider closed (finished)" in crawled.stderr
    items = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    assert len(items) == SIZE
    assert stages(root) == ["pages.sqlite"]


def test_bench_never_checkpoints(project):
    root, _ = project
    for _ in range(2):
        bench = scrapy(root, "bench", "-s", "CLOSESPIDER_TIMEOUT=1", "-s", "LOGSTATS_INTERVAL=0")
        assert bench.returncode == 0, bench.stderr
        assert "Spider closed (closespider_timeout)" in bench.stderr
    assert stages(root) == []
