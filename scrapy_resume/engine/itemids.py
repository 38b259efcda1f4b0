"""Stable item ids: the same item gets the same id when a crash makes the
crawl fetch its response again.

An item's id is its request's ledger key and its position among the items
that response's callback (or errback) yielded: ``<key hex>-c<n>`` (``-e<n>``
for an errback's). An item from ``start()`` is ``start-<n>``, by its
position there. A pipeline asks for the id while the item is in flight,
between the callback yielding it and its leaving the pipelines.

An item the checkpoint did not see yielded (a pipeline returned a new object,
or the response is not tracked: ``meta["checkpoint_skip"]``) gets an id made
from its content, ``content-<sha1>``: stable only if its fields are.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from itemadapter import ItemAdapter
from scrapy import Request
from scrapy.utils.serialize import ScrapyJSONEncoder

logger = logging.getLogger(__name__)

_encoder = ScrapyJSONEncoder(sort_keys=True, ensure_ascii=False)


def response_item_id(key: bytes, namespace: bytes, position: int) -> str:
    return f"{key.hex()}-{namespace.decode()}{position}"


def start_item_id(ordinal: int) -> str:
    return f"start-{ordinal}"


def content_item_id(item: Any) -> str:
    data = _encoder.encode(ItemAdapter(item).asdict()) if ItemAdapter.is_item(item) else repr(item)
    return "content-" + hashlib.sha1(data.encode()).hexdigest()


def item_as_json(item: Any) -> str:
    """The item's fields as a JSON object (what the SQL pipeline stores)."""
    return _encoder.encode(ItemAdapter(item).asdict())


class Completion(Protocol):
    """What an item's id is made of: its response's Completion (completion.py)."""

    key: bytes
    namespace: bytes
    request: Request
    items_in_flight: dict[int, int]  # id(item) -> position, for its items in the pipelines


class ItemIds:
    """The items in flight, by object identity: whose output they are, and where."""

    def __init__(self) -> None:
        # id(item) -> (item, its Completion, its position); the item is kept so its
        # id() stays unique while it is here
        self.in_flight: dict[int, tuple[Any, Completion, int]] = {}
        self.warned = False

    def yielded(self, item: Any, completion: Completion, position: int) -> None:
        self.in_flight[id(item)] = (item, completion, position)
        completion.items_in_flight[id(item)] = position

    def settled(self, item: Any, completion: Completion) -> int | None:
        """``item`` left the pipelines: its position, or None if none is left.

        A pipeline may have returned another object: the completion's oldest
        item in flight is the one settled then (the positions of the items
        committed with a request matter, not which object had which)."""
        position = completion.items_in_flight.pop(id(item), None)
        if position is not None:
            self.in_flight.pop(id(item), None)
            return position
        if not completion.items_in_flight:
            return None
        oldest = next(iter(completion.items_in_flight))
        self.in_flight.pop(oldest, None)
        return completion.items_in_flight.pop(oldest)

    def _entry(self, item: Any) -> tuple[Any, Completion, int] | None:
        """``item``'s entry, if it is in flight (the very object, not one at its address)."""
        entry = self.in_flight.get(id(item))
        return entry if entry is not None and entry[0] is item else None

    def url_of(self, item: Any) -> str:
        """The URL of the request whose response yielded ``item`` ("" if unknown)."""
        entry = self._entry(item)
        return entry[1].request.url if entry is not None else ""

    def id_of(self, item: Any, start_ordinal: int | None) -> str:
        entry = self._entry(item)
        if entry is not None:
            _, completion, position = entry
            return response_item_id(completion.key, completion.namespace, position)
        if start_ordinal is not None:
            return start_item_id(start_ordinal)
        if not self.warned:
            self.warned = True
            logger.warning(
                "item_id() was given an item the checkpoint did not see the spider yield (a "
                "pipeline before this one returned a new object, or the response is not "
                "checkpointed): its id is made from its content, stable only if its fields are. "
                "Call item_id() before replacing the item, or return the same object."
            )
        return content_item_id(item)
