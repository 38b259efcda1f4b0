"""What does checkpointing cost? Plain Scrapy vs scrapy-resume vs JOBDIR, same run.

    python bench/overhead.py [--pages 5000] [--pairs 5] [--profiles 3] [--no-profile]
                             [--instructions 200] [--before REV] [--progress-bar]

Crawls a local site (served on 127.0.0.1 by tests/mockserver.py) of
``--pages`` pages, with ``-o items.jsonl``, in alternating rounds of plain
Scrapy, scrapy-resume (the add-on) and JOBDIR. It prints the median ratio of
crawl time (Scrapy's ``elapsed_time_seconds``) of each against plain Scrapy.

Paired wall-time ratios are noisy on shared machines, so it also runs
``--profiles`` checkpointed crawls under py-spy, their samples pooled (ours
are a few hundred a crawl, so one crawl's share moved by ±0.2 points), and
reports the share of CPU samples spent in scrapy_resume's own frames. Samples
where our spider-middleware wrapper is only pulling the spider's own output
through Scrapy's chain are not ours
and are not counted: those below the wrapper (the spider's and Scrapy's
work), and those on the wrapper's own ``async for`` line (the async generator
hop of one more middleware layer; printed apart, and in a second headline
figure that counts them). With ``--instructions N``, it also counts, under
valgrind's callgrind, the instructions of an N-page crawl, plain and
checkpointed: a ratio that host noise does not move. With ``--before REV``, each
round also crawls with scrapy_resume as it was at git revision REV (checkpointed
the same way), for a before/after ratio measured in the same run. With
``--progress-bar``, each round also crawls checkpointed with the live bar drawn
on a pseudo-terminal, for the bar's own cost.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pty
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.crawling import ENABLING

# our frames that only pass the spider's own output along: time below them is the spider's
PASS_THROUGH = {"iterate", "aiterate", "process_spider_output", "process_spider_output_async",
                "process_start", "errback", "_await_then_wrap"}


def function_name(frame: str) -> str:
    """``Completion.aiterate (/path/completion.py:140)`` -> ``aiterate``."""
    return frame.split(" (")[0].rsplit(".", 1)[-1]


@functools.lru_cache(maxsize=None)
def is_pulling_line(frame: str) -> bool:
    """Is ``frame`` at a ``for``/``async for`` line: taking the next output?"""
    location = frame.rpartition(" (")[2].rstrip(")")
    path, _, line = location.rpartition(":")
    source = Path(path) if Path(path).is_absolute() else REPO / path
    if not line.isdigit() or not source.is_file():
        return False
    text = source.read_text().splitlines()[int(line) - 1].lstrip()
    return text.startswith(("for ", "async for "))


def start_site() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "mockserver.py")], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def on_a_terminal(cmd: list[str], **kwargs) -> None:
    """Run ``cmd`` with its stderr on a pseudo-terminal, which a thread drains."""
    master, slave = pty.openpty()

    def drain() -> None:
        try:
            while os.read(master, 65536):
                pass
        except OSError:  # EIO: the crawl closed it
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=slave, **kwargs)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)


def crawl(variant: str, base: str, ns: str, pages: int, fanout: int, workdir: Path,
          under: list[str] | None = None, package: Path = REPO) -> dict:
    """One crawl in a subprocess; ``under`` is a profiler command to run it under,
    ``package`` the directory scrapy_resume is imported from. The ``bar`` variant is
    the checkpointed crawl with its progress bar drawn on a terminal."""
    workdir.mkdir(parents=True)
    stats_file = workdir / "stats.json"
    settings = {"LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": "0",
                "CHECKPOINT_DIR": str(workdir / "checkpoints")}
    settings.update(ENABLING["off" if variant in ("plain", "jobdir") else "addon"])
    if variant == "bar":
        settings["CHECKPOINT_PROGRESS_BAR"] = "1"
    if variant == "jobdir":
        settings["JOBDIR"] = str(workdir / "job")
    site = f"gl/{pages}/{fanout}" if fanout > 5 else f"g/{pages}/{fanout}"
    spider = str(REPO / "tests/spiders/graph.py")
    cmd = [sys.executable, "-m", "scrapy.cmdline", "runspider", spider,
           "-a", f"start={base}/{ns}/{site}/0", "-a", f"stats_file={stats_file}",
           "-o", str(workdir / "items.jsonl")]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    if under:
        cmd = [*under, *cmd]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    path = os.pathsep.join(dict.fromkeys([str(package), str(REPO)]))  # tests/ from this tree
    env = {**os.environ, "PYTHONPATH": path}
    if variant == "bar":
        on_a_terminal(cmd, cwd=workdir, env=env)
    else:
        subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the crawl process: unlike wall time, not inflated by other tenants
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = json.loads(stats_file.read_text())
    items = sum(1 for _ in (workdir / "items.jsonl").open())
    if items < pages:
        raise SystemExit(f"{variant}: only {items} items for {pages} pages")
    elapsed = float(stats["elapsed_time_seconds"])
    commit_share = float(stats.get("checkpoint/commit_seconds", 0)) / elapsed
    return {"elapsed": elapsed, "wall": wall, "cpu": cpu, "items": items,
            "commit_share": commit_share}


def package_at(revision: str, tmp: Path) -> Path:
    """scrapy_resume as it was at git ``revision``, extracted under ``tmp``."""
    where = tmp / "before"
    where.mkdir()
    archive = subprocess.run(["git", "archive", revision, "scrapy_resume"], cwd=REPO,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def py_spy(raw: Path) -> list[str]:
    return ["py-spy", "record", "-r", "250", "-f", "raw", "-o", str(raw), "--"]


def instructions(variant: str, base: str, pages: int, fanout: int, workdir: Path,
                 package: Path = REPO) -> int:
    """Instructions a crawl executes, counted by valgrind's callgrind: unlike
    seconds, the same whatever else the machine runs, so two crawls compare
    exactly on a noisy host (each runs about 50 times slower, though)."""
    out = workdir.parent / f"{workdir.name}.callgrind"
    crawl(variant, base, workdir.name, pages, fanout, workdir,
          under=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"], package=package)
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction count in {out}")


def instruction_ratios(base: str, pages: int, fanout: int, tmp: Path,
                       packages: dict[str, Path]) -> dict[str, tuple[float, float]]:
    """(whole crawl, per page beyond start-up) instruction ratios of each
    checkpointed crawl (this tree's, and ``packages``') to a plain one;
    start-up is a 1-page crawl's count."""
    variants = ["plain", "checkpoint", *packages]
    runs = [(variant, size) for size in (pages, 1) for variant in variants]

    def count(run: tuple[str, int]) -> int:
        variant, size = run
        return instructions("checkpoint" if variant in packages else variant, base, size,
                            fanout, tmp / f"cg-{variant}-{size}", packages.get(variant, REPO))

    with ThreadPoolExecutor(2) as pool:  # counts do not depend on timing: run two at once
        counts = dict(zip(runs, pool.map(count, runs)))
    ratios = {}
    for variant in variants[1:]:
        whole = counts[variant, pages] / counts["plain", pages]
        per_page = ((counts[variant, pages] - counts[variant, 1])
                    / (counts["plain", pages] - counts["plain", 1]))
        ratios[variant] = (whole, per_page)
    return ratios


def samples(*raws: Path) -> Iterator[tuple[list[str], int]]:
    """``(frames, count)`` for each stack of ``py-spy record -f raw`` files."""
    for raw in raws:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                yield stack.split(";"), int(count)


def fingerprint_share(*raws: Path) -> float:
    """Share of samples computing request fingerprints, whoever asked for them."""
    total = fingerprinting = 0
    for frames, count in samples(*raws):
        total += count
        if any("RequestFingerprinter.fingerprint" in frame for frame in frames):
            fingerprinting += count
    return fingerprinting / total if total else 0.0


@dataclass
class CpuShare:
    """Samples of one profiled crawl, and which of them were scrapy_resume's."""

    total: int = 0
    ours: int = 0  # everything below a scrapy_resume frame, but pass-through
    fingerprinting: int = 0  # of ours: fingerprints the dupefilter would compute anyway
    importing: int = 0  # of ours: importing the package, once, at start-up
    pulling: int = 0  # not ours: a pass-through wrapper's own loop, taking the next output

    @property
    def overhead(self) -> float:
        """The headline figure: our own work during the crawl."""
        return (self.ours - self.fingerprinting - self.importing) / self.total

    @property
    def overhead_with_pulling(self) -> float:
        """The same, counting the hop of our middleware layer as ours too."""
        return (self.ours + self.pulling - self.fingerprinting - self.importing) / self.total

    def share(self, count: int) -> float:
        return count / self.total


def cpu_share(*raws: Path) -> CpuShare:
    """Classify the samples of ``py-spy record -f raw`` files.

    Request fingerprints are cached per request by Scrapy, so the ones we
    compute first are not computed again by the dupefilter (a plain crawl
    spends as much on them: the bench prints both). Imports happen once, before
    the crawl.
    """
    result = CpuShare()
    for frames, count in samples(*raws):
        result.total += count
        inner = [i for i, frame in enumerate(frames) if "scrapy_resume" in frame]
        if not inner:
            continue
        deepest = frames[inner[-1]]
        below = frames[inner[-1] + 1:]
        if function_name(deepest) in PASS_THROUGH:
            if below:
                continue  # the spider's (or Scrapy's) own work, pulled through our wrapper
            if is_pulling_line(deepest):
                result.pulling += count  # the wrapper taking the next output from the chain
                continue
        result.ours += count
        if below and "fingerprint" in below[0]:
            result.fingerprinting += count
        elif function_name(deepest) == "<module>":
            result.importing += count
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--fanout", type=int, default=5,
                        help="links per page; above 5, a link-heavy site (5 new links, the "
                             "rest to pages seen already)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--profiles", type=int, default=3,
                        help="checkpointed crawls run under py-spy, their samples pooled")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--before", metavar="REV",
                        help="also crawl with scrapy_resume at git revision REV, each round")
    parser.add_argument("--instructions", type=int, default=0, metavar="PAGES",
                        help="also count the instructions of a PAGES-page crawl, plain and "
                             "checkpointed, under valgrind (slow: try 200)")
    parser.add_argument("--progress-bar", action="store_true",
                        help="also crawl checkpointed with the progress bar on a terminal")
    args = parser.parse_args()

    site, base = start_site()
    tmp = Path(tempfile.mkdtemp(prefix="scrapy-resume-bench-"))
    results: dict[str, list[dict]] = {"plain": [], "checkpoint": [], "jobdir": []}
    packages = {"before": package_at(args.before, tmp)} if args.before else {}
    results.update((name, []) for name in packages)
    bar = ["bar"] if args.progress_bar else []
    results.update((name, []) for name in bar)
    try:
        for round_ in range(args.pairs):
            order = ["plain", "checkpoint", "jobdir", *bar, *packages]
            if round_ % 2:
                order.reverse()  # alternate, so drift over time favours no one
            for variant in order:
                result = crawl("checkpoint" if variant in packages else variant, base,
                               f"{variant}{round_}", args.pages, args.fanout,
                               tmp / f"{variant}-{round_}", package=packages.get(variant, REPO))
                results[variant].append(result)
                print(f"round {round_ + 1} {variant:>10}: {result['elapsed']:.2f}s crawl, "
                      f"{result['wall']:.2f}s wall, {result['cpu']:.2f}s CPU", flush=True)
        profile = None
        if not args.no_profile and shutil.which("py-spy"):
            raws = [tmp / f"profile-{n}.txt" for n in range(args.profiles)]
            for n, raw in enumerate(raws):
                crawl("checkpoint", base, f"profiled{n}", args.pages, args.fanout,
                      tmp / f"profiled-{n}", under=py_spy(raw))
            profile = cpu_share(*raws)
            # fingerprints are computed in plain Scrapy too, by the dupefilter
            plain_raw = tmp / "plain-profile.txt"
            crawl("plain", base, "profiled-plain", args.pages, args.fanout,
                  tmp / "profiled-plain", under=py_spy(plain_raw))
            fingerprints = (fingerprint_share(plain_raw), fingerprint_share(*raws))
        counted = None
        if args.instructions and shutil.which("valgrind"):
            counted = instruction_ratios(base, args.instructions, args.fanout, tmp, packages)
        elif args.instructions:
            print("valgrind not found: apt-get install valgrind for the instruction counts")
    finally:
        site.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.pages} pages, {args.fanout} links per page, -o items.jsonl, "
          f"{args.pairs} rounds")
    for variant in ("checkpoint", "jobdir", *bar, *packages):
        ratios = [r["elapsed"] / p["elapsed"] for r, p in zip(results[variant], results["plain"])]
        walls = [r["wall"] / p["wall"] for r, p in zip(results[variant], results["plain"])]
        cpus = [r["cpu"] / p["cpu"] for r, p in zip(results[variant], results["plain"])]
        print(f"{variant:>10} / plain: median crawl-time ratio {statistics.median(ratios):.3f} "
              f"(pairs {min(ratios):.3f}..{max(ratios):.3f}); "
              f"median wall ratio {statistics.median(walls):.3f}; "
              f"median CPU-time ratio {statistics.median(cpus):.3f} "
              f"(pairs {min(cpus):.3f}..{max(cpus):.3f}); "
              f"pages per minute {1 / statistics.median(ratios):.1%} of plain")
    if packages:
        cpus = [r["cpu"] / b["cpu"] for r, b in zip(results["checkpoint"], results["before"])]
        times = [r["elapsed"] / b["elapsed"]
                 for r, b in zip(results["checkpoint"], results["before"])]
        print(f"checkpoint / before ({args.before}): median CPU-time ratio "
              f"{statistics.median(cpus):.3f} (pairs {min(cpus):.3f}..{max(cpus):.3f}); "
              f"median crawl-time ratio {statistics.median(times):.3f}")
    if bar:
        cpus = [b["cpu"] / r["cpu"] for b, r in zip(results["bar"], results["checkpoint"])]
        print(f"progress bar: median CPU-time ratio with / without {statistics.median(cpus):.3f}"
              f" (pairs {min(cpus):.3f}..{max(cpus):.3f})")
    commit_shares = [r["commit_share"] for r in results["checkpoint"]]
    print(f"time in checkpoint commits: median {statistics.median(commit_shares):.2%} of the "
          f"crawl time (checkpoint/commit_seconds)")
    if profile is not None:
        print(f"CPU samples inside scrapy_resume during the crawl: {profile.overhead:.2%} of "
              f"{profile.total} ({args.profiles} crawls, py-spy, 250 Hz). Not counted: "
              f"request fingerprinting "
              f"{profile.share(profile.fingerprinting):.2%} (the dupefilter would do it: it "
              f"takes {fingerprints[0]:.2%} of a plain crawl's samples, "
              f"{fingerprints[1]:.2%} of this one's, all callers), importing the package "
              f"{profile.share(profile.importing):.2%} (once, at start-up), our middleware "
              f"wrapper's own loop pulling the next output {profile.share(profile.pulling):.2%} "
              f"(counted too: {profile.overhead_with_pulling:.2%})")
    elif not args.no_profile:
        print("py-spy not found: pip install py-spy for the CPU-share figure")
    for variant, (whole, per_page) in (counted or {}).items():
        print(f"instructions (callgrind, {args.instructions} pages), {variant} / plain: "
              f"{whole:.3f} for the whole crawl, {per_page:.3f} per page beyond start-up")
    ratio = {v: statistics.median(r["elapsed"] / p["elapsed"]
                                  for r, p in zip(results[v], results["plain"]))
             for v in ("checkpoint", "jobdir")}
    cpu_ratio = statistics.median(
        r["cpu"] / p["cpu"] for r, p in zip(results["checkpoint"], results["plain"])
    )
    cpu = "n/a" if profile is None else (
        f"{profile.overhead:.2%} ({profile.overhead_with_pulling:.2%} with the pulling loop)"
    )
    print(f"SUMMARY pages={args.pages} links={args.fanout} rounds={args.pairs}: "
          f"crawl-time ratio {ratio['checkpoint']:.3f} (JOBDIR {ratio['jobdir']:.3f}), "
          f"pages/min {1 / ratio['checkpoint']:.1%} of plain, "
          f"CPU-time ratio {cpu_ratio:.3f}, "
          f"commits {statistics.median(commit_shares):.2%} of crawl time, CPU share {cpu}"
          + ("" if counted is None else
             f", instructions per page {counted['checkpoint'][1]:.3f}"))


if __name__ == "__main__":
    main()
