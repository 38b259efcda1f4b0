"""The progress line in a real crawl's log."""

from __future__ import annotations

import re

from tests.crawling import Crawl, kill_after

LINE = re.compile(
    r"Checkpoint graph: (?P<percent>[\d.]+)% \((?P<settled>[\d,]+)/(?P<total>[\d,]+) requests\) "
    r"\| ok (?P<ok>[\d.]+%|-) \| (?P<rate>[\d.]+) req/s \| ETA (?P<eta>\S+) "
    r"\| committed (?P<committed>[\d.]+s ago|not yet)"
)


def progress_lines(log: str) -> list[dict]:
    return [m.groupdict() for m in LINE.finditer(log)]


def test_progress_line_has_a_sane_percentage_rate_and_eta(tmp_path, mockserver):
    ns = mockserver.namespace()
    mockserver.configure(ns, delay_ms=100)  # 16 requests at a time: at most 160 req/s
    # (a rate is measured between commits, so allow some slack: up to 400)
    crawl = Crawl(tmp_path, "graph", args={"start": mockserver.url(f"{ns}/g/600/5/0")},
                  settings={"CHECKPOINT_PROGRESS_INTERVAL": "0.5"})
    result = crawl.run()
    lines = progress_lines(result.log)
    assert len(lines) >= 4, result.log[-2000:]
    percents = [float(line["percent"]) for line in lines]
    assert all(0 <= p <= 100 for p in percents) and percents[-1] > percents[0]
    settled = [int(line["settled"].replace(",", "")) for line in lines]
    assert settled == sorted(settled)  # the percentage may dip as discovery finds more
    running = [line for line in lines[1:] if float(line["percent"]) < 100]
    assert running, "some lines while the crawl runs"
    for line in running:
        rate = float(line["rate"])
        assert 0 < rate <= 400
        assert re.fullmatch(r"\d+s|\d+m\d\ds", line["eta"]), line["eta"]
        assert line["ok"] == "100.0%"


def test_skipped_pages_do_not_count_towards_throughput(tmp_path, mockserver):
    ns = mockserver.namespace()
    urls = tmp_path / "urls.txt"  # 16 at a time, 100 ms each: at most 160 req/s
    urls.write_text("".join(mockserver.url(f"{ns}/slow/100/{i}") + "\n" for i in range(1000)))
    crawl = Crawl(tmp_path, "urls", args={"input": str(urls)},
                  settings={"CHECKPOINT_PROGRESS_INTERVAL": "0.3"})
    kill_after(crawl, mockserver, ns, 800)
    resumed = crawl.run(CHECKPOINT_RESUME="1")
    # start() yields the 1,000 URLs again: the done ones are skipped in a burst of
    # several hundred within a fraction of a second; counted, they would be thousands/s
    assert resumed.stats["checkpoint/skipped"] > 500
    lines = progress_lines(resumed.log.replace("Checkpoint urls:", "Checkpoint graph:"))
    assert len(lines) >= 2, resumed.log[-2000:]
    assert max(float(line["rate"]) for line in lines) <= 400
