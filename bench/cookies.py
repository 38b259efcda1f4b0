"""What do cookies in the checkpoint cost? Plain Scrapy vs scrapy-resume with
CHECKPOINT_COOKIES off and on, measured in the same run.

    python bench/cookies.py [--pages 3000] [--rounds 3]

Crawls the mock server's login site (tests/mockserver.py: a FormRequest login,
then ``--pages`` private pages, 5 links each) with ``-o items.jsonl``, in
alternating rounds, twice: once where only the login sets a cookie, once where
every page sets one (``churn``, as analytics cookies do: the worst case, a jar
change to commit with every response). Prints the median pages per second of
each, and the ratios against plain Scrapy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPIDER = REPO / "tests" / "spiders" / "login.py"
ADDON = json.dumps({"scrapy_resume.Addon": 0})
VARIANTS = {
    "plain Scrapy": {},
    "checkpoint, CHECKPOINT_COOKIES=0": {"ADDONS": ADDON, "CHECKPOINT_COOKIES": "0"},
    "checkpoint, cookies committed": {"ADDONS": ADDON},
}


def crawl(site: str, pages: int, settings: dict[str, str], workdir: Path) -> float:
    """One crawl; its pages per second (Scrapy's elapsed_time_seconds)."""
    stats = workdir / "stats.json"
    cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider", str(SPIDER),
           "-a", f"site={site}", "-a", f"size={pages}", "-a", f"stats_file={stats}",
           "-o", str(workdir / "items.jsonl"), "-s", "LOG_LEVEL=WARNING",
           "-s", f"CHECKPOINT_DIR={workdir / 'checkpoints'}", "-s", "TELNETCONSOLE_ENABLED=0"]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, cwd=workdir, env=env, check=True, timeout=600)
    elapsed = json.loads(stats.read_text())["elapsed_time_seconds"]
    return pages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "mockserver.py")],
                              stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        for churn in (False, True):
            rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
            for round_ in range(options.rounds):
                for name, settings in VARIANTS.items():
                    ns = f"bench{int(churn)}{round_}{len(rates[name])}{abs(hash(name)) % 1000}"
                    if churn:
                        urllib.request.urlopen(f"{base}/_config/{ns}?delay=0&churn=1").read()
                    with tempfile.TemporaryDirectory() as workdir:
                        rates[name].append(crawl(f"{base}/{ns}", options.pages, settings,
                                                 Path(workdir)))
            print(f"\n{options.pages} private pages, {options.rounds} rounds, "
                  f"{'every page sets a cookie' if churn else 'only the login sets a cookie'}:")
            plain = statistics.median(rates["plain Scrapy"])
            for name, values in rates.items():
                median = statistics.median(values)
                print(f"  {name:34} {median:7.0f} pages/s   {median / plain:5.2f}x plain")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
