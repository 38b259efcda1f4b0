"""The live progress bar: on a real terminal (a pty), it appears, updates, and
Scrapy's log lines print above it whole; never an escape code without one."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from tests.crawling import REPO, Crawl, graph_crawl

PAGES = 300
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[[\w.]+\] (?:INFO|WARNING|ERROR): ")


def run_on_a_terminal(crawl: Crawl, timeout: float = 120, **settings: str) -> tuple[int, bytes]:
    """Run the crawl with its stdin, stdout and stderr on a pseudo-terminal, 160
    columns wide; returns its exit status and all it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    crawl.runs += 1
    proc = subprocess.Popen(crawl.command(settings), cwd=crawl.workdir,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the crawl closed the terminal
                break
            if not data:
                break
            output.append(data)
    finally:
        os.close(master)
    return proc.wait(30), b"".join(output)


def test_on_a_terminal_the_bar_updates_and_log_lines_stay_whole(tmp_path, mockserver):
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=150)  # a crawl of a few seconds: several redraws
    crawl = graph_crawl(tmp_path, mockserver, ns, PAGES, settings={"LOG_LEVEL": "INFO"})
    status, output = run_on_a_terminal(crawl)
    assert status == 0, output[-3000:]
    # the first bar: settled/total and the failed count; the second: items
    counts = set(re.findall(rb"graph: +\d+%\|[^|]*\| (\d+)/(\d+) \[", output))
    assert (str(PAGES).encode(), str(PAGES).encode()) in counts  # the last redraw
    assert len(counts) >= 3, counts  # and it moved on the way
    assert b"failed 0" in output and re.search(rb"items: \d+", output)
    # every log line whole: from its timestamp to its end, no bar drawn into it
    lines = [line for line in output.split(b"\n") if LOG_LINE.search(line)]
    assert any(b"Closing spider (finished)" in line for line in lines)
    for line in lines:
        logged = line[LOG_LINE.search(line).start():]
        assert b"\r" not in logged.rstrip(b"\r") and b"\x1b" not in logged, line
    assert len(crawl.items()) == PAGES


def test_without_a_terminal_there_is_no_bar_and_no_escape_code(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, 50, settings={"LOG_LEVEL": "INFO"})
    result = crawl.run()  # its output goes to a file
    assert result.finish_reason == "finished"
    assert "\r" not in result.log and "\x1b" not in result.log and "items:" not in result.log
    forced = crawl.run(CHECKPOINT_PROGRESS_BAR="1", CHECKPOINT_RESET="1")
    assert "CHECKPOINT_PROGRESS_BAR is on, but stderr is not a terminal: no bar" in forced.log
    assert "\r" not in forced.log and "\x1b" not in forced.log


def test_auto_leaves_a_debug_log_without_a_bar_and_off_means_off(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = graph_crawl(tmp_path, mockserver, ns, 30)
    status, output = run_on_a_terminal(crawl, LOG_LEVEL="DEBUG")  # (Scrapy's default)
    assert status == 0 and b"Crawled (200)" in output and b"items:" not in output
    status, output = run_on_a_terminal(crawl, LOG_LEVEL="INFO", CHECKPOINT_PROGRESS_BAR="0",
                                       CHECKPOINT_RESET="1")
    assert status == 0 and b"items:" not in output and b"\x1b" not in output
