"""``scrapy checkpoint report --html -o report.html``: one self-contained page.

Per stage: its status and counts, the runs as a timeline (a crashed run in
red), settled requests over time across the runs (from the progress samples:
an interruption is a gap between two runs' lines), each run's throughput, the
top failure reasons with example URLs, and the commands to resume and retry.
The charts are SVG drawn here, in Python: the page needs no network and no
script to show them. Its one small script checks, once loaded, that every
chart has a size, and says so on ``<body data-charts>`` (the browser test
reads it).
"""

from __future__ import annotations

import time
from collections import Counter
from html import escape
from typing import Any

from scrapy_resume.commands.stageinfo import (
    open_store,
    settled,
    stage_commands,
    stage_info,
    stage_names,
)
from scrapy_resume.store.base import StageBackend
from scrapy_resume.store.records import RequestStatus, format_time

WIDTH, HEIGHT, MARGIN = 760, 180, 40
COLOURS = {"finished": "#2e7d32", "crashed": "#c62828", "running": "#1565c0"}
OTHER_COLOUR = "#f9a825"  # paused: shutdown, closespider_*, a refusal...
MAX_FAILURES_READ = 100_000  # for the top reasons: enough to rank them


def report_data(backend: StageBackend) -> list[dict[str, Any]]:
    """What the page shows of each readable stage (a corrupt one is listed by `list`)."""
    stages = []
    for stage in stage_names(backend):
        info = stage_info(backend, stage)
        if "done" not in info:
            continue
        store = open_store(backend, stage)
        try:
            stages.append({
                "info": info, "runs": store.runs(), "progress": store.progress(),
                "failures": failure_reasons(store.ledger_rows(RequestStatus.FAILED)),
                "commands": stage_commands(info, store.state()),
            })
        finally:
            store.close()
    return stages


def failure_reasons(rows: Any, top: int = 10) -> list[dict[str, Any]]:
    """The commonest errors of failed requests, each with its count and 3 example URLs."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for number, row in enumerate(rows):
        if number >= MAX_FAILURES_READ:
            break
        reason = (row["error"] or "unknown").splitlines()[0][:160]
        counts[reason] += 1
        if len(examples.setdefault(reason, [])) < 3:
            examples[reason].append(row["url"])
    return [{"reason": reason, "count": count, "examples": examples[reason]}
            for reason, count in counts.most_common(top)]


def run_outcome(run: dict[str, Any], last: bool, live: bool) -> str:
    if run["close_reason"]:
        return run["close_reason"]
    return "running" if last and live else "crashed"


class Scale:
    """Maps time and counts onto a chart's pixels."""

    def __init__(self, start: float, end: float, top: float):
        self.start, self.span = start, max(end - start, 1e-6)
        self.top = max(top, 1)

    def x(self, at: float) -> float:
        return MARGIN + (at - self.start) / self.span * (WIDTH - 2 * MARGIN)

    def y(self, value: float) -> float:
        return HEIGHT - MARGIN + (MARGIN * 2 - HEIGHT) * value / self.top  # (labels above)


def svg(title: str, body: list[str]) -> str:
    return (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}"><title>{escape(title)}</title>{"".join(body)}</svg>')


def axis(scale: Scale, label: str) -> list[str]:
    bottom = HEIGHT - MARGIN
    return [
        f'<line x1="{MARGIN}" y1="{bottom}" x2="{WIDTH - MARGIN}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{MARGIN}" y="{bottom + 16}" class="tick">'
        f'{escape(format_time(scale.start))}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{bottom + 16}" class="tick" text-anchor="end">'
        f'{escape(format_time(scale.start + scale.span))}</text>',
        f'<text x="{MARGIN}" y="16" class="tick">{escape(label)}</text>',
    ]


def run_ends(runs: list[dict[str, Any]], samples: list[dict[str, Any]], now: float,
             outcomes: list[str]) -> list[float]:
    """When each run ended: a crashed run, at its last sample (or the next run's start)."""
    ends = []
    for number, (run, outcome) in enumerate(zip(runs, outcomes), start=1):
        if run["ended_at"]:
            ends.append(run["ended_at"])
        elif outcome == "running":
            ends.append(now)
        else:
            seen = [s["at"] for s in samples if s["run"] == number]
            later = runs[number]["started_at"] if number < len(runs) else now
            ends.append(min(max(seen, default=run["started_at"]), later))
    return ends


def timeline_chart(runs: list[dict[str, Any]], outcomes: list[str], ends: list[float]) -> str:
    scale = Scale(runs[0]["started_at"], max(ends), 1)
    body = axis(scale, "runs")
    for number, (run, end, outcome) in enumerate(zip(runs, ends, outcomes), start=1):
        x0, x1 = scale.x(run["started_at"]), scale.x(end)
        colour = COLOURS.get(outcome, OTHER_COLOUR)
        body.append(f'<rect x="{x0:.1f}" y="50" width="{max(x1 - x0, 3):.1f}" height="60" '
                    f'fill="{colour}"><title>run {number} ({escape(run["mode"])}): '
                    f'{escape(outcome)}</title></rect>')
        body.append(f'<text x="{x0 + 2:.1f}" y="128" class="tick">{number}: '
                    f'{escape(outcome)}</text>')
    return svg("runs over time", body)


def progress_chart(samples: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    top = max(settled(s) + s["pending"] for s in samples)
    scale = Scale(min(runs[0]["started_at"], samples[0]["at"]), samples[-1]["at"], top)
    body = axis(scale, f"settled requests (of {top:,} known)")
    before = 0  # settled when the run began: where the last one left off
    for number, run in enumerate(runs, start=1):  # a line per run, from its start
        own = [(s["at"], settled(s)) for s in samples if s["run"] == number]
        if not own:
            continue
        points = [(run["started_at"], before), *own]
        body.append('<polyline points="' + " ".join(
            f"{scale.x(at):.1f},{scale.y(value):.1f}" for at, value in points
        ) + f'" fill="none" stroke="#1565c0" stroke-width="2"><title>run {number}</title>'
                    '</polyline>')
        body += [f'<circle cx="{scale.x(at):.1f}" cy="{scale.y(value):.1f}" r="2.5" '
                 f'fill="#1565c0"/>' for at, value in own]
        before = own[-1][1]
    for run in runs[1:]:  # where each later run began: after an interruption
        x = scale.x(run["started_at"])
        body.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{HEIGHT - MARGIN}" '
                    f'stroke="#c62828" stroke-dasharray="4 3"/>')
    return svg("settled requests over time", body)


def throughput_chart(samples: list[dict[str, Any]], runs: list[dict[str, Any]],
                     now: float) -> tuple[str, list[float]]:
    """Requests settled per second by each run (from its samples)."""
    rates, before = [], 0
    for number, run in enumerate(runs, start=1):
        own = [s for s in samples if s["run"] == number]
        if not own:
            rates.append(0.0)
            continue
        seconds = max((run["ended_at"] or own[-1]["at"]) - run["started_at"], 1e-3)
        rates.append(max(settled(own[-1]) - before, 0) / seconds)
        before = settled(own[-1])
    scale = Scale(0, len(runs), max(rates) or 1)
    body = axis(Scale(runs[0]["started_at"], now, 1), "requests settled per second, by run")
    step = (WIDTH - 2 * MARGIN) / len(runs)
    for index, rate in enumerate(rates):
        x, y = MARGIN + index * step + 4, scale.y(rate)
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 8, 2):.1f}" '
                    f'height="{max(HEIGHT - MARGIN - y, 1):.1f}" fill="#6a1b9a">'
                    f'<title>run {index + 1}: {rate:,.1f}/s</title></rect>')
        body.append(f'<text x="{x:.1f}" y="{y - 4:.1f}" class="tick">{rate:,.1f}/s</text>')
    return svg("throughput by run", body), rates


def stage_section(stage: dict[str, Any], now: float) -> str:
    info, runs, samples = stage["info"], stage["runs"], stage["progress"]
    live = info["status"] in ("running", "recovering")
    outcomes = [run_outcome(run, n == len(runs), live) for n, run in enumerate(runs, start=1)]
    parts = [
        f'<section id="stage-{escape(info["stage"])}"><h2>{escape(info["stage"])} '
        f'<span class="status {escape(str(info["status"]))}">{escape(str(info["status"]))}'
        f'</span></h2>',
        f'<p>{info["done"]:,} done, {info["pending"]:,} pending, {info["failed"]:,} failed, '
        f'{info["dropped"]:,} dropped; {info["items"]:,} items. {info["percent_settled"]}% '
        f'settled, success rate {info["success_rate"] if info["success_rate"] is not None else "-"}'
        f'%.</p>',
    ]
    if runs:
        ends = run_ends(runs, samples, now, outcomes)
        parts.append("<h3>Runs</h3>" + timeline_chart(runs, outcomes, ends))
    if runs and samples:
        chart, _ = throughput_chart(samples, runs, now)
        parts += ["<h3>Progress</h3>", progress_chart(samples, runs), "<h3>Throughput</h3>",
                  chart]
    elif runs:
        parts.append("<p>No progress samples (a stage recorded by an older version).</p>")
    if stage["failures"]:
        rows = "".join(
            f"<tr><td>{escape(f['reason'])}</td><td>{f['count']:,}</td><td>"
            + "<br>".join(escape(url) for url in f["examples"]) + "</td></tr>"
            for f in stage["failures"])
        parts.append("<h3>Top failure reasons</h3><table><tr><th>reason</th><th>requests</th>"
                     f"<th>examples</th></tr>{rows}</table>")
    parts.append("<h3>Commands</h3><pre>" + "\n".join(
        escape(command) for command in stage["commands"].values()) + "</pre></section>")
    return "".join(parts)


def html_report(stages: list[dict[str, Any]]) -> str:
    """``stages``: per stage, ``info`` (stage_info), ``runs``, ``progress`` (samples),
    ``failures`` (failure_reasons) and ``commands`` (resume, retry)."""
    now = time.time()
    sections = "".join(stage_section(stage, now) for stage in stages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>scrapy-resume report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
section {{ border-top: 1px solid #ddd; padding-top: 1em; }}
.status {{ font-size: 60%; padding: .2em .5em; border-radius: .3em; background: {OTHER_COLOUR};
  color: #fff; vertical-align: middle; }}
.status.completed {{ background: {COLOURS["finished"]}; }}
.status.crashed {{ background: {COLOURS["crashed"]}; }}
.status.running, .status.recovering {{ background: {COLOURS["running"]}; }}
.tick {{ font-size: 11px; fill: #555; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: .3em .6em;
  text-align: left; vertical-align: top; }}
pre {{ background: #f5f5f5; padding: .6em; white-space: pre-wrap; }}
</style></head>
<body>
<h1>scrapy-resume report</h1>
<p>{len(stages)} stage(s), {escape(format_time(now))}.</p>
{sections}
<script>
addEventListener("load", function () {{
  var charts = document.querySelectorAll("svg.chart"), drawn = 0;
  charts.forEach(function (chart) {{
    var box = chart.getBBox();
    if (box.width > 0 && box.height > 0) drawn += 1;
  }});
  document.body.dataset.charts = drawn + " of " + charts.length;
}});
</script>
</body></html>
"""
