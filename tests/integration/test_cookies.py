"""Logged-in crawls resume logged in: real crawls behind the mock server's
login (tests/mockserver.py), SIGKILLed and resumed, with the cookie jars in
the checkpoint, without them, and with the re-login pattern."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

from scrapy_resume import CheckpointCorrupt, CheckpointStore, RequestStatus
from tests.crawling import (
    Crawl,
    kill_once,
    run_until_finished,
    scrapy_checkpoint,
    was_killed,
)

SIZE = 1000
RELOGIN = {"CHECKPOINT_RESTORE_AFTER_START": "1"}  # with the spider's relogin=1


def login_crawl(tmp_path, mockserver, ns, *, settings=None, **args) -> Crawl:
    return Crawl(tmp_path, "login", args={"site": mockserver.url(ns), "size": str(SIZE), **args},
                 settings=settings)


def private_pages(mockserver, ns, account="alice", size=SIZE) -> list[str]:
    return sorted(mockserver.url(f"{ns}/p/{account}/{size}/{n}") for n in range(size))


def assert_every_private_page_once(crawl, mockserver, ns, account="alice", size=SIZE):
    items = [item for item in crawl.items() if f"/p/{account}/" in item["url"]]
    assert [item for item in crawl.items() if item["title"] == "Login"] == []
    urls = Counter(item["url"] for item in items)
    assert {url for url, n in urls.items() if n > 1} == set()  # none twice
    assert sorted(urls) == private_pages(mockserver, ns, account, size)  # none missing
    # each page was served to its own account's session
    assert {item["title"].rsplit(" of ", 1)[1] for item in items} == {account}


def login_posts(mockserver, ns) -> int:
    return mockserver.hits(ns).get(f"/{ns}/login", 0)


def crash_three_times(crawl, mockserver, ns, seed, **options):
    runs = run_until_finished(crawl, mockserver, ns, random.Random(seed),
                              interruptions=[{"signal": "KILL"}] * 3, stage="login",
                              at=(100, 300), **options)
    assert len(runs) == 4 and all(was_killed(result) for result, _ in runs[:-1])
    assert runs[-1][0].finish_reason == "finished"
    return runs


def test_a_crawl_killed_after_its_login_resumes_logged_in(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = login_crawl(tmp_path, mockserver, ns)
    runs = crash_three_times(crawl, mockserver, ns, "cookies")

    assert_every_private_page_once(crawl, mockserver, ns)
    assert len(crawl.items()) == SIZE
    assert login_posts(mockserver, ns) == 1  # logged in once, by the first run
    for result, _ in runs[1:]:
        assert "Restored 1 cookie(s) from the checkpoint: cookiejar 1: session" in result.log
    summary = crawl.summary("login")
    assert (summary.done, summary.failed) == (SIZE + 1, 0)


def test_without_cookies_in_the_checkpoint_a_resume_gets_the_login_form(tmp_path, mockserver):
    """CHECKPOINT_COOKIES=0 keeps Scrapy's behaviour: the restored requests go out
    without the session, and the pages below them are never discovered."""
    ns = mockserver.namespace()
    crawl = login_crawl(tmp_path, mockserver, ns, settings={"CHECKPOINT_COOKIES": "0"})
    kill_once(crawl, mockserver, ns, 300, requests_committed(crawl))
    result = crawl.run(CHECKPOINT_RESUME="1")
    assert result.finish_reason == "finished"
    assert "Restored" not in result.log
    login_forms = [item for item in crawl.items() if item["title"] == "Login"]
    private = {item["url"] for item in crawl.items() if item["title"] != "Login"}
    assert login_forms != [] and len(private) < SIZE
    assert crawl.summary("login").failed == 0  # a silent loss: why the cookies are committed


def test_the_relogin_pattern_logs_in_before_the_restored_requests_go_out(tmp_path, mockserver):
    """Cookies not committed (or a session expired server-side): start() logs in on
    every run, and CHECKPOINT_RESTORE_AFTER_START holds the frontier until it has."""
    ns = mockserver.namespace()
    crawl = login_crawl(tmp_path, mockserver, ns, relogin="1", check="1",
                        settings={"CHECKPOINT_COOKIES": "0", **RELOGIN})
    crash_three_times(crawl, mockserver, ns, "relogin")

    assert_every_private_page_once(crawl, mockserver, ns)
    assert login_posts(mockserver, ns) == 4  # once a run
    summary = crawl.summary("login")
    assert (summary.done, summary.failed) == (SIZE, 0)  # (the login is not in the ledger)


def test_a_session_expired_while_the_crawl_was_down_fails_its_pages_then_a_retry_gets_them(
    tmp_path, mockserver
):
    ns = mockserver.namespace()
    crawl = login_crawl(tmp_path, mockserver, ns, relogin="1", check="1")
    kill_once(crawl, mockserver, ns, 300, requests_committed(crawl))
    mockserver.expire_sessions(ns)
    # resumed without waiting for the new login: the restored requests go out with the
    # expired session, and each one that gets the login form ends failed, not done
    second = crawl.run(CHECKPOINT_RESUME="1")
    assert second.finish_reason == "finished"
    store = CheckpointStore(crawl.store_path("login"))
    try:
        failures = list(store.ledger_rows(RequestStatus.FAILED))
    finally:
        store.close()
    assert failures != []
    assert {row["error"].split(":")[0] for row in failures} == {"SessionExpired"}
    assert all(row["error"].endswith("redirected to the login form") for row in failures)
    assert [item for item in crawl.items() if item["title"] == "Login"] == []

    third = crawl.run(CHECKPOINT_RESUME="1", CHECKPOINT_RETRY_FAILED="1", **RELOGIN)
    assert third.finish_reason == "finished"
    assert_every_private_page_once(crawl, mockserver, ns)
    summary = crawl.summary("login")
    assert (summary.done, summary.failed) == (SIZE, 0)


def test_two_cookiejars_each_resume_with_their_own_account(tmp_path, mockserver):
    ns = mockserver.namespace()
    size = 300
    crawl = login_crawl(tmp_path, mockserver, ns, accounts="alice,bob", size=str(size))
    runs = run_until_finished(crawl, mockserver, ns, random.Random("two jars"),
                              interruptions=[{"signal": "TERM"}, {"signal": "KILL"}],
                              stage="login", at=(100, 250))
    assert len(runs) == 3 and runs[-1][0].finish_reason == "finished"
    assert runs[0][0].finish_reason == "shutdown" and was_killed(runs[1][0])
    for account in ("alice", "bob"):
        assert_every_private_page_once(crawl, mockserver, ns, account, size)
    assert len(crawl.items()) == 2 * size
    assert login_posts(mockserver, ns) == 2
    assert ("Restored 2 cookie(s) from the checkpoint: cookiejar 1: session; "
            "cookiejar 2: session") in runs[1][0].log


def stored_cookies(crawl) -> dict:
    store = CheckpointStore(crawl.store_path("login"), read_only=True)
    try:
        return store.state()["cookies"]
    finally:
        store.close()


def cookies_committed(crawl):
    def ready() -> bool:
        try:
            return bool(stored_cookies(crawl))
        except (KeyError, CheckpointCorrupt):  # none yet, or the stage is being created
            return False
    return ready


def requests_committed(crawl):
    """A commit has written pending requests: the resume restores them."""
    def ready() -> bool:
        try:
            store = CheckpointStore(crawl.store_path("login"), read_only=True)
        except CheckpointCorrupt:  # the stage is being created
            return False
        try:
            return store.summary().pending > 0
        finally:
            store.close()
    return ready


def test_an_expired_cookie_is_not_restored_and_no_value_is_ever_shown(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = login_crawl(tmp_path, mockserver, ns, remember="5")
    first = kill_once(crawl, mockserver, ns, 60, cookies_committed(crawl))
    done_first = crawl.done_urls("login")
    (jar, cookies), = stored_cookies(crawl)["jars"]
    by_name = {cookie["name"]: cookie for cookie in cookies}
    assert (jar, sorted(by_name)) == (1, ["remember", "session"])
    values = set(mockserver.get_json(f"_sessions/{ns}"))
    assert {cookie["value"] for cookie in cookies} == values  # the values are in the checkpoint

    time.sleep(max(0.0, by_name["remember"]["expires"] - time.time() + 1))
    second = crawl.run(CHECKPOINT_RESUME="1")
    assert second.finish_reason == "finished"
    assert ("Restored 1 cookie(s) from the checkpoint: cookiejar 1: session "
            "(1 expired, not restored)") in second.log
    assert_every_private_page_once(crawl, mockserver, ns)
    seen = mockserver.get_json(f"_cookies/{ns}")
    sent_after = {tuple(names) for path, names in seen.items()
                  if mockserver.url(path) not in done_first}
    assert sent_after == {("session",)}  # the resume never sent the expired cookie

    checkpoints = str(tmp_path / "checkpoints")
    show = scrapy_checkpoint("show", "login", "--dir", checkpoints, cwd=tmp_path)
    shown = json.loads(scrapy_checkpoint("show", "login", "--dir", checkpoints, "--json",
                                         cwd=tmp_path).stdout)
    export = scrapy_checkpoint("export", "login", "--dir", checkpoints, cwd=tmp_path)
    assert show.returncode == export.returncode == 0, show.stderr + export.stderr
    assert ("cookies: cookiejar 1: remember (expired), session (their values are not shown)"
            in show.stdout)
    assert shown["cookies"] == {"cookiejar 1": ["remember (expired)", "session"]}
    everything = first.log + second.log + show.stdout + json.dumps(shown) + export.stdout
    assert [value for value in values if value in everything] == []



def test_a_start_request_refused_silently_does_not_hold_the_frontier_forever(
    tmp_path, mockserver
):
    """The features spider's start() yields an offsite URL, which OffsiteMiddleware's
    request_scheduled handler refuses without a word: the gate opens anyway."""
    crawls = {}
    for name, settings in (("plain", {}), ("gated", RELOGIN)):
        ns = mockserver.namespace()
        crawl = Crawl(tmp_path / name, "features", args={"base": mockserver.url(ns)},
                      settings=settings)
        (tmp_path / name).mkdir()
        result = crawl.run()
        assert result.finish_reason == "finished", result.log[-3000:]
        crawls[name] = (result, sorted(json.dumps(item, sort_keys=True).replace(ns, "NS")
                                     for item in crawl.items()))
    gated, plain = crawls["gated"], crawls["plain"]
    assert gated[0].log.count("1 of start()'s requests were never downloaded") == 1
    assert "never downloaded" not in plain[0].log
    assert gated[1] == plain[1] != []
