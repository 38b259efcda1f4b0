"""The demo shop the example crawls: generated, deterministic, served on 127.0.0.1.

Run ``python -m demo.site``: it prints its URL, then serves until killed.
5 categories x 20 listing pages x 10 products; some products answer 404 or
500, the way real sites do. ``/api/price/<product>`` answers JSON, for the
enrichment stage. ``/login`` opens a session (user ``demo``, password
``demo``, a ``session`` cookie) for the customer account's ``/account/orders``
pages; without one they redirect to the login form. ``/_restart`` forgets
every session, as a server restarted while the crawl was down would.
"""

from __future__ import annotations

import json
import secrets
import sys

from twisted.internet import reactor
from twisted.web import resource, server

CATEGORIES = ["books", "garden", "kitchen", "music", "toys"]
PAGES = 20
PER_PAGE = 10
LISTING_DELAY = 0.03  # seconds: slow enough for the demo to interrupt a crawl
API_DELAY = 0.02
ORDER_PAGES = 20  # the customer account: 20 pages of 10 orders
sessions: set[str] = set()


def product_ids(category: str, page: int) -> range:
    first = (CATEGORIES.index(category) * PAGES + page - 1) * PER_PAGE
    return range(first, first + PER_PAGE)


def product_price(product: int) -> dict:
    return {"product": product, "price": round(5 + (product * 7919) % 9500 / 100, 2),
            "stock": (product * 31) % 17}


def order_total(order: int) -> float:
    return round(10 + (order * 104729) % 20000 / 100, 2)


def product_status(product: int) -> int:
    if product % 37 == 5:
        return 404
    if product % 53 == 7:
        return 500
    return 200


class Shop(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        parts = request.path.decode().strip("/").split("/")
        if parts == [""]:
            links = "".join(
                f'<a class="category" data-name="{c}" href="/category/{c}?page=1">{c}</a>'
                for c in CATEGORIES
            )
            return f"<html><h1>Demo shop</h1>{links}</html>".encode()
        if parts[0] == "category" and len(parts) == 2 and parts[1] in CATEGORIES:
            page = int(request.args.get(b"page", [b"1"])[0])
            return self.listing(request, parts[1], page)
        if parts[0] == "product" and len(parts) == 2 and parts[1].isdigit():
            product = int(parts[1])
            request.setResponseCode(product_status(product))
            return f"<html><h1>Product {product}</h1></html>".encode()
        if parts[:2] == ["api", "price"] and len(parts) == 3 and parts[2].isdigit():
            body = json.dumps(product_price(int(parts[2]))).encode()
            request.setHeader(b"content-type", b"application/json")
            return self.later(request, body, API_DELAY)
        if parts[0] == "login":
            return LOGIN_FORM
        if parts[0] == "_restart":
            sessions.clear()
            return b"sessions forgotten"
        if parts[0] == "account":
            return self.account(request, parts[1:])
        request.setResponseCode(404)
        return b"not found"

    def render_POST(self, request):
        form = {k.decode(): v[0].decode() for k, v in request.args.items()}
        if request.path != b"/login" or (form.get("user"), form.get("password")) != (
            "demo", "demo"
        ):
            return LOGIN_FORM
        token = secrets.token_hex(16)
        sessions.add(token)
        request.addCookie(b"session", token.encode(), path=b"/", httpOnly=True)
        return b"<html><h1>Welcome back, demo</h1></html>"

    def account(self, request, parts: list[str]):
        """The customer's orders: only with a session, else the login form."""
        if request.received_cookies.get(b"session", b"").decode() not in sessions:
            request.setResponseCode(302)
            request.setHeader(b"Location", b"/login?next=" + request.uri)
            return b"log in first"
        if parts == ["orders"]:
            page = int(request.args.get(b"page", [b"1"])[0])
            orders = "".join(f'<a class="order" href="/account/order/{o}">order {o}</a>'
                             for o in range((page - 1) * 10, page * 10))
            more = f'<a class="next" href="?page={page + 1}">next</a>' if page < ORDER_PAGES else ""
            return self.later(request, f"<html>{orders}{more}</html>".encode(), LISTING_DELAY)
        if len(parts) == 2 and parts[0] == "order" and parts[1].isdigit():
            order = int(parts[1])
            body = f'<html><h1>Order {order}</h1><p class="total">{order_total(order)}</p></html>'
            return self.later(request, body.encode(), API_DELAY)
        request.setResponseCode(404)
        return b"not found"

    def listing(self, request, category: str, page: int):
        products = "".join(
            f'<a class="product" href="/product/{p}">product {p}</a>'
            for p in product_ids(category, page)
        )
        more = f'<a class="next" href="?page={page + 1}">next</a>' if page < PAGES else ""
        body = f"<html><h1>{category} {page}</h1>{products}{more}</html>".encode()
        return self.later(request, body, LISTING_DELAY)

    @staticmethod
    def later(request, body: bytes, delay: float):
        """Answer after ``delay`` seconds, like a real server under load."""

        def answer():
            request.write(body)
            request.finish()

        call = reactor.callLater(delay, answer)
        request.notifyFinish().addErrback(lambda _: call.cancel())
        return server.NOT_DONE_YET


LOGIN_FORM = (b'<html><h1>Log in</h1><form action="/login" method="post">'
              b'<input name="user"><input name="password" type="password"></form></html>')


def main() -> None:
    site = server.Site(Shop())
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(f"http://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
