"""The cursor API: a cursor commits exactly when its response's effects do."""

from __future__ import annotations

import json
import random
import sqlite3

from scrapy_resume import RequestStatus
from tests.crawling import Crawl, run_until_finished, was_killed

ACCOUNTS = ["a", "b", "c"]
PAGES = 40


def committed_cursors(crawl: Crawl) -> dict:
    with sqlite3.connect(crawl.store_path("api")) as db:
        return {name: json.loads(value) for name, value in db.execute("SELECT name, value FROM cursors")}


def test_cursor_survives_sigkill_exactly_when_its_response_does(tmp_path, mockserver):
    ns = mockserver.namespace()
    base = mockserver.url(ns)
    crawl = Crawl(tmp_path, "api", args={"base": base, "pages": str(PAGES)})
    page_url = lambda account, page: f"{base}/api/{account}/{page}?pages={PAGES}"
    rng = random.Random("cursors")

    def check_cursors(result):
        cursors = committed_cursors(crawl)
        ledger = crawl.ledger("api")
        for account in ACCOUNTS:
            cursor = cursors.get(f"account:{account}", 0)
            if cursor is None:  # the account is finished: its last page is done
                assert ledger[page_url(account, PAGES - 1)] == RequestStatus.DONE
                continue
            # the page that wrote the cursor is done, the one it points to is not
            if cursor > 0:
                assert ledger[page_url(account, cursor - 1)] == RequestStatus.DONE
            assert ledger.get(page_url(account, cursor)) != RequestStatus.DONE

    runs = run_until_finished(
        crawl, mockserver, ns, rng, interruptions=[{"signal": "KILL"}] * 3, stage="api", at=(20, 60),
        after_each=check_cursors,
    )
    assert len(runs) == 4 and all(was_killed(result) for result, _ in runs[:-1])
    assert committed_cursors(crawl) == {f"account:{a}": None for a in ACCOUNTS}
    expected = {f"{a}-{p}-{i}" for a in ACCOUNTS for p in range(PAGES) for i in range(3)}
    assert {item["id"] for item in crawl.items()} == expected
    assert len(mockserver.hits(ns)) == len(ACCOUNTS) * PAGES
