"""`scrapy checkpoint report --html`: one self-contained page, opened in a real
headless browser (Debian's chromium): its charts draw, it logs no console error,
and a screenshot of it is kept. The stage: two runs, a kill between them,
failures, a completed end."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import pytest

from tests.crawling import graph_crawl, kill_after, scrapy_checkpoint

SIZE, DEAD_EVERY = 600, 50  # pages 7, 57, ... link to a dead port: failed requests


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed here (apt-get install chromium; .ci/run "
                    "installs it): the browser test cannot run")
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", *args], capture_output=True, text=True, timeout=timeout,
    )


def png_colours(path) -> int:
    """How many distinct byte values the screenshot's pixels hold (1 or 2: a blank page)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            chunks.append(data[at + 8:at + 8 + length])
        at += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))


def test_the_html_report_draws_in_a_browser(tmp_path, mockserver):
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=30)
    crawl = graph_crawl(tmp_path, mockserver, ns, SIZE, args={"dead_every": str(DEAD_EVERY)})
    kill_after(crawl, mockserver, ns, 250)
    mockserver.configure(ns, delay_ms=0)
    assert crawl.run(CHECKPOINT_RESUME="1").finish_reason == "finished"
    page = tmp_path / "report.html"
    written = scrapy_checkpoint("report", "--html", "-o", str(page), "--dir",
                                str(tmp_path / "checkpoints"), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    html = page.read_text()
    assert page.stat().st_mode & 0o077 == 0  # its URLs may hold tokens: private
    assert not re.search(r"(src|href)=\"https?:", html)  # nothing fetched at view time
    assert html.count('<svg class="chart"') == 3  # runs, progress, throughput
    assert "completed" in html and "crashed" in html and "finished" in html
    assert "Top failure reasons" in html and "http://127.0.0.1:1" in html
    assert "-s CHECKPOINT_RESUME=1" in html and "-s CHECKPOINT_RETRY_FAILED=1" in html

    shown = chromium("--dump-dom", page.as_uri())
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert 'data-charts="3 of 3"' in shown.stdout  # the page's own check: each chart drew
    assert ":CONSOLE" not in shown.stderr, shown.stderr  # no console message, no error
    screenshot = tmp_path / "report.png"
    taken = chromium(f"--screenshot={screenshot}", "--window-size=900,1400", page.as_uri())
    assert taken.returncode == 0 and screenshot.exists(), taken.stderr[-2000:]
    assert png_colours(screenshot) > 20  # a drawn page, not a blank one
    shutil.copy(screenshot, tmp_path.parent / "report-screenshot.png")  # kept for a look


def test_report_html_needs_a_file(tmp_path, mockserver):
    ns = mockserver.namespace()
    graph_crawl(tmp_path, mockserver, ns, 20).run()
    refused = scrapy_checkpoint("report", "--html", "--dir", str(tmp_path / "checkpoints"),
                                cwd=tmp_path)
    assert refused.returncode == 2 and "-o report.html" in refused.stderr
