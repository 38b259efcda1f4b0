"""Where a request came from, besides a callback or an errback's output."""

from __future__ import annotations

from enum import Enum


class Origin(Enum):
    """The parent of a request that no response yielded.

    A request's parent is the ``Completion`` of the response (or failure)
    whose callback yielded it, or one of these. It travels in
    ``request.meta[ORIGIN_META]`` as ``(parent, ordinal)`` until the request
    is scheduled; None there means it came from outside the spider's code
    (``engine.crawl()`` called by a component).
    """

    START = "start"  # yielded by the spider's start()
    RESTORED = "restored"  # read back from the checkpoint's frontier
