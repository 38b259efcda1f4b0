"""The demo shop the example crawls: generated, deterministic, served on 127.0.0.1.

Run ``python -m demo.site``: it prints its URL, then serves until killed.
5 categories x 20 listing pages x 10 products; some products answer 404 or
500, the way real sites do. ``/api/price/<product>`` answers JSON, for the
enrichment stage.
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor
from twisted.web import resource, server

CATEGORIES = ["books", "garden", "kitchen", "music", "toys"]
PAGES = 20
PER_PAGE = 10
LISTING_DELAY = 0.03  # seconds: slow enough for the demo to interrupt a crawl
API_DELAY = 0.02


def product_ids(category: str, page: int) -> range:
    first = (CATEGORIES.index(category) * PAGES + page - 1) * PER_PAGE
    return range(first, first + PER_PAGE)


def product_price(product: int) -> dict:
    return {"product": product, "price": round(5 + (product * 7919) % 9500 / 100, 2),
            "stock": (product * 31) % 17}


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


def main() -> None:
    site = server.Site(Shop())
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(f"http://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
