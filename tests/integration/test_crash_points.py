"""Every step of a stage's life survives a kill, or an I/O error, at a syscall.

A sample of deterministic crash points (tests/faults.py): the creation of a
stage (its temporary file, the rename into place, the signing secret), its
first and last commits, the close (the WAL folded back), a RESET run and
``scrapy checkpoint reset``. Each point is followed by what a user would do
next (run the reset again, then resume until finished), and must end with
every item in the feed exactly once and a completed stage.
``bench/crash_points.py`` runs every point, not a sample.
"""

from __future__ import annotations

import pytest

from tests.faults import STRACE, Point, Scenario

KILL, ENOSPC = "signal=SIGKILL", "error=ENOSPC"

# (phase, syscall, which call, fault): "first", "middle" and "last" are resolved
# against the number of such calls the phase makes
SAMPLE = [
    ("fresh", "pwrite64", "first", KILL),  # the temporary stage file's first page
    ("fresh", "fdatasync", "first", KILL),
    ("fresh", "link", "first", KILL),  # the signing secret, put in place
    ("fresh", "rename", "first", KILL),  # the new stage, put in place
    ("fresh", "pwrite64", "middle", KILL),
    ("fresh", "pwrite64", "last", KILL),  # the WAL copied back at the close
    ("fresh", "fdatasync", "last", KILL),
    ("fresh", "unlink", "last", KILL),
    ("fresh", "pwrite64", "first", ENOSPC),  # a full disk while creating the stage
    ("fresh", "pwrite64", "last", ENOSPC),  # ... and at the close
    ("reset", "pwrite64", "first", KILL),  # the WAL folded into the stage being reset
    ("reset", "rename", "first", KILL),  # the feed moved aside
    ("reset", "rename", "last", KILL),
    ("reset", "pwrite64", "first", ENOSPC),
    ("command", "rename", "first", KILL),
    ("command", "rename", "last", KILL),
]

pytestmark = pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, mockserver):
    return Scenario(tmp_path_factory.mktemp("crash-points"), mockserver, mockserver.namespace())


@pytest.fixture(scope="module")
def counts(scenario):
    return {phase: scenario.reference_counts(phase) for phase in ("fresh", "reset", "command")}


def nth(count: int, which: str) -> int:
    return {"first": 1, "middle": max(1, count // 2), "last": count}[which]


@pytest.mark.parametrize("phase, syscall, which, action", SAMPLE,
                         ids=[f"{p}-{s}-{w}-{a.split('=')[1]}" for p, s, w, a in SAMPLE])
def test_a_fault_at_this_point_loses_nothing_and_duplicates_nothing(
    scenario, counts, phase, syscall, which, action
):
    made = counts[phase][syscall]
    assert made > 0, f"the {phase} phase makes no {syscall} call: {dict(counts[phase])}"
    scenario.check(Point(phase, syscall, nth(made, which), action))


# The feed is a JSON array, or JSON batches of 20: killed mid-crawl (two thirds
# in: batches fill and new ones start) or while the stage closes (its last
# commits, the stage marked completed, the WAL folded back), the resume must
# still end with one valid document per file and every item once. Found by the
# sweep: a stage marked completed before its document's closing bracket was
# written was left open for good; and a commit that filled a batch left the
# records for the next one to later commits, after their requests were done.
DOCUMENT_SAMPLE = [("pwrite64", "2/3"), ("pwrite64", 15), ("pwrite64", 6), ("pwrite64", 1),
                   ("fdatasync", 1)]


@pytest.fixture(scope="module", params=["json", "batched-json"])
def document_scenario(request, tmp_path_factory, mockserver):
    scenario = Scenario(tmp_path_factory.mktemp(f"crash-{request.param}"), mockserver,
                        mockserver.namespace(), request.param)
    return scenario, scenario.reference_counts("fresh")


@pytest.mark.parametrize("syscall, from_the_end", DOCUMENT_SAMPLE,
                         ids=[f"{s}-last-{n}" for s, n in DOCUMENT_SAMPLE])
def test_a_kill_while_a_document_feed_is_written_or_closed_leaves_it_valid(
    document_scenario, syscall, from_the_end
):
    scenario, counts = document_scenario
    made = counts[syscall]
    when = made * 2 // 3 if from_the_end == "2/3" else made + 1 - from_the_end
    scenario.check(Point("fresh", syscall, when, KILL))
