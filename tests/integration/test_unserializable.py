"""A child that cannot be serialized keeps its parent not-done until it finishes."""

from __future__ import annotations

from scrapy_resume import RequestStatus
from tests.crawling import Crawl, kill_after


def test_parent_waits_for_its_unserializable_child_across_a_kill(tmp_path, mockserver):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "lambdas", args={"base": base, "child_ms": "4000"})
    # kill 1.5 s into the child's 4 s download: several commits have happened
    killed = kill_after(crawl, mockserver, ns, 1, path="/child", delay="1.5")
    assert "Cannot checkpoint a request for callback LambdaSpider.parse_parent.<locals>.<lambda>" in killed.log
    ledger = crawl.ledger("lambdas")
    assert ledger[f"{base}/slow/10/parent"] == RequestStatus.PENDING
    assert ledger[f"{base}/slow/10/sibling"] == RequestStatus.DONE
    assert f"{base}/slow/4000/child" not in ledger

    resumed = crawl.run(CHECKPOINT_RESUME="1")
    assert resumed.finish_reason == "finished"
    ledger = crawl.ledger("lambdas")
    assert set(ledger.values()) == {RequestStatus.DONE}
    assert ledger[f"{base}/slow/4000/child"] == RequestStatus.DONE
    hits = mockserver.hits(ns)
    # the parent and the child again, the sibling (done) never again
    assert hits == {f"/{ns}/slow/10/parent": 2, f"/{ns}/slow/10/sibling": 1,
                    f"/{ns}/slow/4000/child": 2}
    assert resumed.stats["checkpoint/unserializable"] == 2  # once per run


def test_a_child_finished_in_its_parents_commit_is_never_serialized(tmp_path, mockserver):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "lambdas", args={"base": base})
    # one commit, at the end: the parent completes first, then its children
    result = crawl.run(CHECKPOINT_COMMIT_INTERVAL="60")
    assert result.finish_reason == "finished"
    # their settlements are written in the parent's commit: no pending copy was
    # needed, so the lambda callback was never tried
    assert "checkpoint/unserializable" not in result.stats
    assert "Cannot checkpoint a request" not in result.log
    ledger = crawl.ledger("lambdas")
    assert ledger == {
        f"{base}/slow/10/parent": RequestStatus.DONE,
        f"{base}/slow/10/sibling": RequestStatus.DONE,
        f"{base}/slow/10/child": RequestStatus.DONE,
    }
    assert sorted(item["page"] for item in crawl.items()) == ["child", "parent", "sibling"]


def test_a_parent_is_not_held_by_an_unserializable_child_that_finished_first(tmp_path, mockserver):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    # the child (10 ms) is done and committed while the parent's callback runs on for 2 s
    crawl = Crawl(tmp_path, "lambdas", args={"base": base, "linger": "2"})
    result = crawl.run()
    assert result.finish_reason == "finished"
    assert result.stats["checkpoint/unserializable"] == 1
    assert set(crawl.ledger("lambdas").values()) == {RequestStatus.DONE}
    assert result.stats["checkpoint/commits"] >= 2  # the child was committed before the parent
    assert sorted(item["page"] for item in crawl.items()) == ["child", "parent", "sibling"]


def test_a_parent_waits_for_an_unserializable_child_finished_first_in_the_same_commit(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    # one commit, at the end, holding the child (done in 10 ms) and then its parent
    # (its callback runs on for 2 s): the parent cannot store the child, waits for
    # it, and is released by the child's settlement within the same commit
    crawl = Crawl(tmp_path, "lambdas", args={"base": base, "linger": "2"})
    result = crawl.run(CHECKPOINT_COMMIT_INTERVAL="60")
    assert result.finish_reason == "finished"
    assert result.stats["checkpoint/unserializable"] == 1
    assert crawl.ledger("lambdas") == {
        f"{base}/slow/10/parent": RequestStatus.DONE,
        f"{base}/slow/10/sibling": RequestStatus.DONE,
        f"{base}/slow/10/child": RequestStatus.DONE,
    }
    assert sorted(item["page"] for item in crawl.items()) == ["child", "parent", "sibling"]
