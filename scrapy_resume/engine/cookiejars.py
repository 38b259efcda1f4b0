"""The crawl's cookie jars in the checkpoint: what a commit writes of them.

Scrapy's CookiesMiddleware keeps one jar per ``meta["cookiejar"]`` value, in
memory. Our subclass (components/cookies.py) reports each change a request
or a response makes to a jar, and the change is committed with the
settlement of that request, like a cursor: if the crawl dies before the
response is fully processed, the resume fetches it again, and the server
sets the cookie again. So the committed cookies are the jars as the settled
responses left them, and a resume restores them before its first request.

Cookies are credentials: they are written only into the checkpoint (a
private file, like the requests), never logged; only their names are shown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from http.cookiejar import Cookie
from typing import Any

logger = logging.getLogger(__name__)

#: The key of the cookie jars in the stage's state.
STATE = "cookies"

#: The attributes a cookie is rebuilt from: ``http.cookiejar.Cookie``'s own.
FIELDS = (
    "version", "name", "value", "port", "port_specified", "domain", "domain_specified",
    "domain_initial_dot", "path", "path_specified", "secure", "expires", "discard",
    "comment", "comment_url", "rfc2109",
)
#: The attributes outside the standard ones worth keeping (read with the public
#: ``get_nonstandard_attr``; the cookie's dict of them is private).
NONSTANDARD = ("HttpOnly", "SameSite")

CookieId = tuple[str, str, str]  # (domain, path, name): what a jar keys a cookie by
Change = tuple[int, Any, CookieId, "dict[str, Any] | None"]  # (order, jar, cookie, new fields)


def cookie_fields(cookie: Cookie) -> dict[str, Any]:
    fields = {name: getattr(cookie, name) for name in FIELDS}
    rest = {name: cookie.get_nonstandard_attr(name) for name in NONSTANDARD
            if cookie.has_nonstandard_attr(name)}
    if rest:
        fields["rest"] = rest
    return fields


def cookie_from_fields(fields: dict[str, Any]) -> Cookie:
    return Cookie(rest=dict(fields.get("rest", {})), **{name: fields[name] for name in FIELDS})


def jar_contents(jar: Iterable[Cookie]) -> dict[CookieId, dict[str, Any]]:
    return {(c.domain, c.path, c.name): cookie_fields(c) for c in jar}


def is_expired(fields: dict[str, Any], now: float) -> bool:
    expires = fields.get("expires")
    return expires is not None and expires <= now


def storable_jar_key(jar_key: Any) -> bool:
    """Can the jar's key (the ``cookiejar`` meta value) be stored as JSON and read back?"""
    if isinstance(jar_key, tuple):
        return all(storable_jar_key(part) for part in jar_key)
    return jar_key is None or isinstance(jar_key, (str, int, float, bool))


def _as_jar_key(stored: Any) -> Any:
    """JSON gives tuples back as lists: the jar keys were tuples."""
    return tuple(_as_jar_key(part) for part in stored) if isinstance(stored, list) else stored


class SessionCookies:
    """The committed cookie jars, and the changes waiting for their request's commit."""

    def __init__(self) -> None:
        self.committed: dict[tuple[Any, CookieId], dict[str, Any]] = {}
        # the order of the change each committed cookie comes from: requests
        # settle in any order, and an older change must not undo a newer one
        self.committed_order: dict[tuple[Any, CookieId], int] = {}
        self.pending: dict[bytes, list[Change]] = {}  # ledger key -> its changes
        self.loose: list[Change] = []  # from requests the ledger does not track
        self.order = 0
        self.changed = False
        self.unstorable: set[str] = set()  # jar keys warned about

    def load(self, state: dict[str, Any]) -> None:
        for jar_key, cookies in state.get("jars", []):
            for fields in cookies:
                ident = (fields["domain"], fields["path"], fields["name"])
                self.committed[(_as_jar_key(jar_key), ident)] = fields

    def restorable(self, now: float) -> tuple[list[tuple[Any, Cookie]], int]:
        """The committed cookies to put back in the jars, and how many expired meanwhile."""
        cookies = [(jar_key, cookie_from_fields(fields))
                   for (jar_key, _), fields in self.committed.items()
                   if not is_expired(fields, now)]
        return cookies, len(self.committed) - len(cookies)

    def record(self, key: bytes | None, jar_key: Any,
               before: dict[CookieId, dict[str, Any]],
               after: dict[CookieId, dict[str, Any]]) -> None:
        """A request (ledger key ``key``, None if untracked) changed jar ``jar_key``."""
        changes: list[Change] = []
        for ident in before.keys() | after.keys():
            fields = after.get(ident)
            if fields != before.get(ident):
                self.order += 1
                changes.append((self.order, jar_key, ident, fields))
        if not changes:
            return
        if not storable_jar_key(jar_key):
            if repr(jar_key) not in self.unstorable:
                self.unstorable.add(repr(jar_key))
                logger.warning(
                    "The cookies of cookiejar %r are not checkpointed: a cookiejar key must "
                    "be a string, a number, None or a tuple of those", jar_key,
                )
            return
        if key is None:
            self.loose.extend(changes)
        else:
            self.pending.setdefault(key, []).extend(changes)

    def settled(self, key: bytes) -> None:
        """The request ``key`` is settled in the batch being built: so are its changes."""
        changes = self.pending.pop(key, None)
        if changes:
            self._apply(changes)

    def state_to_commit(self, now: float) -> dict[str, Any] | None:
        """After the batch's settlements: the jars to write, if they changed."""
        loose, self.loose = self.loose, []
        self._apply(loose)
        if not self.changed:
            return None
        self.changed = False
        jars: dict[Any, list[dict[str, Any]]] = {}
        for (jar_key, _), fields in self.committed.items():
            if not is_expired(fields, now):
                jars.setdefault(jar_key, []).append(fields)
        return {"jars": [[jar_key, cookies] for jar_key, cookies in jars.items()]}

    def _apply(self, changes: list[Change]) -> None:
        for order, jar_key, ident, fields in changes:
            where = (jar_key, ident)
            if order <= self.committed_order.get(where, 0):
                continue  # a newer change is committed already
            self.committed_order[where] = order
            if fields is None:
                self.committed.pop(where, None)
            else:
                self.committed[where] = fields
            self.changed = True


def cookie_names(state: dict[str, Any], now: float) -> Iterator[tuple[Any, list[str]]]:
    """Each stored jar's key and its cookies' names (never their values): for ``show``."""
    for jar_key, cookies in state.get("jars", []):
        yield _as_jar_key(jar_key), sorted(
            {fields["name"] + (" (expired)" if is_expired(fields, now) else "")
             for fields in cookies})


def describe_jar(jar_key: Any) -> str:
    return "the default jar" if jar_key is None else f"cookiejar {json.dumps(jar_key)}"
