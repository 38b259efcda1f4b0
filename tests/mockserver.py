"""A local test site, run as a subprocess that prints its URL (Scrapy's mockserver pattern).

Every path starts with a namespace, so tests sharing one server never mix
their hit counts:

- ``/<ns>/g/<size>/<fanout>/<n>``: page ``n`` of a site of ``size`` pages,
  linking to ``n*fanout+1 .. n*fanout+fanout`` plus two pages already seen
  (duplicates for the dupefilter), delayed by the namespace's ``delay`` (ms);
- ``/<ns>/gl/<size>/<links>/<n>``: a link-heavy page: its 5 children, then
  ``links - 5`` links to pages numbered below ``n``, mostly seen already;
- ``/<ns>/wide/<fanout>/<n>``: page ``n`` of an endless wide site, linking to
  ``n*fanout+1 .. n*fanout+fanout``, every link a new page (a frontier that
  grows by ``fanout - 1`` requests a page);
- ``/<ns>/wideh/<fanout>/<id>``: the same, with page ids of a fixed length (20 hex
  digits, a hash of the parent's id and the link's place), so URLs do not lengthen
  with depth as page numbers do (2.3 digits a level with 200 links a page);
- ``/<ns>/status/<code>``: an empty page with that status;
- ``/<ns>/links?CLASS=TARGET&...``: links to each TARGET (a path below the
  namespace, or an absolute URL), with class CLASS;
- ``/<ns>/redirect/<target path>``: a 302 to ``/<ns>/<target path>``;
- ``/<ns>/flaky/<k>/<name>``: 500 for the first ``k`` hits, then 200;
- ``/<ns>/slow/<ms>/<name>``: answers after ``ms`` milliseconds;
- ``/<ns>/api/<account>/<page>?pages=N``: JSON pages of a paginated API;
- ``/<ns>/login``: a login form; posted (``user``, ``password`` "secret",
  optional ``remember`` seconds) it opens a session: a ``session`` cookie,
  and with ``remember`` a ``remember`` cookie of that Max-Age;
- ``/<ns>/p/<account>/<size>/<n>``: private page ``n`` of ``account``'s site
  of ``size`` pages, linking to ``n*5+1 .. n*5+5``; without a session of that
  account, a 302 to the login form (``/<ns>/login?next=...``);
- ``/_sessions/<ns>``: JSON ``{cookie value: account}`` of the namespace's
  sessions; ``/_cookies/<ns>``: JSON ``{path: cookie names}`` of the private
  pages' last hits; ``/_expire/<ns>``: ends every session (server-side expiry);
- ``/_hits/<ns>``: JSON ``{path: hits}`` for the namespace;
- ``/_config/<ns>?delay=MS[&churn=1]``: delay every graph page of the namespace; with
  ``churn``, every private page sets a cookie (``last``), as analytics cookies do;
- ``/_arm/<ns>?pid=P&signal=KILL&at=N&path=SUFFIX&delay=S&hold=1``: send
  ``signal`` to process ``P`` when the namespace has received ``N`` more
  hits (only counting paths ending with SUFFIX, if given), ``delay`` seconds
  later; with ``hold``, from then on no page of the namespace is answered
  until ``/_release/<ns>``, so a graceful stop keeps draining for as long as
  a test needs (a double Ctrl+C: tests/crawling.py ``press_ctrl_c_again``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import sys
from collections import Counter, defaultdict

from twisted.internet import reactor
from twisted.web import resource, server

hits: dict[str, Counter] = defaultdict(Counter)
delays: dict[str, float] = {}
arms: dict[str, list[dict]] = defaultdict(list)
held: dict[str, list] = {}  # namespace -> answers waiting for /_release/<ns>
sessions: dict[str, dict[str, str]] = defaultdict(dict)  # namespace -> cookie value -> account
cookies_seen: dict[str, dict[str, list[str]]] = defaultdict(dict)  # namespace -> path -> names
churning: set[str] = set()  # namespaces whose private pages each set a cookie (``last``)


def graph_links(size: int, fanout: int, n: int) -> list[int]:
    # the children, then two pages already seen; never the root, which is a
    # start URL (dont_filter: a link back to it would fetch it twice, in plain Scrapy too)
    children = [c for c in range(n * fanout + 1, n * fanout + fanout + 1) if c < size]
    return children + [max(1, n // 2), max(1, n // 3)]


def _fire(ns: str, arm: dict) -> None:
    if arm["hold"]:
        held.setdefault(ns, [])
    reactor.callLater(arm["delay"], _send, arm["pid"], arm["signal"])


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Root(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        parts = request.path.decode().strip("/").split("/")
        if parts[0] == "_hits":
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps(hits[parts[1]]).encode()
        if parts[0] == "_arm":
            return self._arm(parts[1], request)
        if parts[0] == "_release":
            for answer in held.pop(parts[1], []):
                answer()
            return b"released"
        if parts[0] in ("_sessions", "_cookies"):
            found = sessions if parts[0] == "_sessions" else cookies_seen
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps(found[parts[1]]).encode()
        if parts[0] == "_expire":
            sessions.pop(parts[1], None)
            return b"expired"
        if parts[0] == "_config":
            delays[parts[1]] = int(request.args[b"delay"][0]) / 1000
            if b"churn" in request.args:
                churning.add(parts[1])
            return b"configured"
        ns, kind, args = parts[0], parts[1], parts[2:]
        path = request.uri.decode()
        hits[ns][path] += 1
        self._count_towards_arms(ns, path)
        handler = getattr(self, f"page_{kind}", None)
        if handler is None:
            request.setResponseCode(404)
            return b"not found"
        return handler(request, ns, args)

    def _arm(self, ns: str, request) -> bytes:
        query = {k.decode(): v[0].decode() for k, v in request.args.items()}
        arms[ns].append(
            {
                "pid": int(query["pid"]),
                "signal": getattr(signal, f"SIG{query.get('signal', 'KILL')}"),
                "left": int(query.get("at", "1")),
                "suffix": query.get("path", ""),
                "delay": float(query.get("delay", "0")),
                "hold": query.get("hold") == "1",
            }
        )
        return b"armed"

    def _count_towards_arms(self, ns: str, path: str) -> None:
        for arm in list(arms[ns]):
            if arm["suffix"] and not path.split("?")[0].endswith(arm["suffix"]):
                continue
            arm["left"] -= 1
            if arm["left"] <= 0:
                arms[ns].remove(arm)
                _fire(ns, arm)

    def render_POST(self, request):
        parts = request.path.decode().strip("/").split("/")
        ns = parts[0]
        hits[ns][request.uri.decode()] += 1
        self._count_towards_arms(ns, request.uri.decode())
        form = {k.decode(): v[0].decode() for k, v in request.args.items()}
        if parts[1:] != ["login"] or form.get("password") != "secret":
            return self.page_login(request, ns, [])
        token = secrets.token_hex(16)
        sessions[ns][token] = form["user"]
        request.addCookie(b"session", token.encode(), path=f"/{ns}/".encode(), httpOnly=True)
        if form.get("remember"):
            remember = secrets.token_hex(16)
            sessions[ns][remember] = form["user"]
            request.addCookie(b"remember", remember.encode(), path=f"/{ns}/".encode(),
                              max_age=form["remember"].encode())
        return f"<html><title>Welcome {form['user']}</title></html>".encode()

    def page_login(self, request, ns, args):
        return (f'<html><title>Login</title><body><form action="/{ns}/login" method="post">'
                f'<input name="user"><input name="password" type="password"></form>'
                f"</body></html>").encode()

    def page_p(self, request, ns, args):
        """A private page of ``account``: only with a session of that account."""
        account, size, n = args[0], int(args[1]), int(args[2])
        path = request.uri.decode()
        cookies_seen[ns][path] = sorted(name.decode() for name in request.received_cookies)
        users = {sessions[ns].get(value.decode()) for value in request.received_cookies.values()}
        if account not in users:
            request.setResponseCode(302)
            request.setHeader(b"Location", f"/{ns}/login?next={path}".encode())
            return b"log in first"
        if ns in churning:  # as analytics cookies do: a new value on every page
            request.addCookie(b"last", str(n).encode(), path=f"/{ns}/".encode())
        links = "".join(f'<a href="/{ns}/p/{account}/{size}/{c}">page {c}</a>\n'
                        for c in range(n * 5 + 1, n * 5 + 6) if c < size)
        return f"<html><title>private {n} of {account}</title><body>{links}</body></html>".encode()

    def page_g(self, request, ns, args):
        size, fanout, n = (int(a) for a in args)
        links = "".join(
            f'<a href="/{ns}/g/{size}/{fanout}/{link}">page {link}</a>\n'
            for link in graph_links(size, fanout, n)
        )
        body = f"<html><title>page {n}</title><body>{links}</body></html>".encode()
        if not delays.get(ns) and ns not in held:
            return body
        return self._later(request, delays.get(ns, 0), body, ns)

    def _later(self, request, seconds: float, body: bytes, ns: str = ""):
        gone = []

        def finish():
            if gone:
                return
            if ns in held:  # answered on /_release/<ns>
                held[ns].append(finish)
                return
            request.write(body)
            request.finish()

        call = reactor.callLater(seconds, finish)

        def client_went_away(_):
            gone.append(True)
            if call.active():
                call.cancel()

        request.notifyFinish().addErrback(client_went_away)
        return server.NOT_DONE_YET

    def page_gl(self, request, ns, args):
        """A link-heavy page: 5 children, then links to pages mostly seen already."""
        size, count, n = (int(a) for a in args)
        children = [c for c in range(n * 5 + 1, n * 5 + 6) if c < size]
        seen = [(n * 7919 + i * 104729) % max(n, 1) for i in range(count - len(children))]
        links = "".join(
            f'<a href="/{ns}/gl/{size}/{count}/{link}">page {link}</a>\n'
            for link in children + seen
        )
        return f"<html><title>page {n}</title><body>{links}</body></html>".encode()

    def page_wide(self, request, ns, args):
        fanout, n = int(args[0]), int(args[1])
        links = "".join(f'<a href="/{ns}/wide/{fanout}/{c}">{c}</a>\n'
                        for c in range(n * fanout + 1, n * fanout + fanout + 1))
        return f"<html><title>page {n}</title><body>{links}</body></html>".encode()

    def page_wideh(self, request, ns, args):
        fanout, page = int(args[0]), args[1]
        children = (hashlib.sha1(f"{page}/{k}".encode()).hexdigest()[:20] for k in range(fanout))
        links = "".join(f'<a href="/{ns}/wideh/{fanout}/{c}">{c}</a>\n' for c in children)
        return f"<html><title>page {page}</title><body>{links}</body></html>".encode()

    def page_links(self, request, ns, args):
        """Links to the targets in the query, each with its parameter's name as class."""
        links = "".join(
            f'<a class="{name.decode()}" href="{self._target(ns, target.decode())}">x</a>\n'
            for name, targets in request.args.items() for target in targets
        )
        return f"<html><body>{links}</body></html>".encode()

    @staticmethod
    def _target(ns: str, target: str) -> str:
        return target if "://" in target else f"/{ns}/{target}"

    def page_status(self, request, ns, args):
        request.setResponseCode(int(args[0]))
        return b"status"

    def page_redirect(self, request, ns, args):
        request.setResponseCode(302)
        request.setHeader(b"Location", f"/{ns}/{'/'.join(args)}".encode())
        return b"redirect"

    def page_flaky(self, request, ns, args):
        failures = int(args[0])
        if hits[ns][request.uri.decode()] <= failures:
            request.setResponseCode(500)
            return b"try again"
        return b"<html><title>flaky ok</title></html>"

    def page_slow(self, request, ns, args):
        return self._later(request, int(args[0]) / 1000, b"<html><title>slow ok</title></html>", ns)

    def page_api(self, request, ns, args):
        account, page = args[0], int(args[1])
        pages = int(request.args.get(b"pages", [b"5"])[0])
        body = {
            "account": account,
            "page": page,
            "items": [f"{account}-{page}-{i}" for i in range(3)],
            "next": page + 1 if page + 1 < pages else None,
        }
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()


def main() -> None:
    site = server.Site(Root())
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(f"http://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
