"""KeySet: an exact set of request keys at about 20 bytes a key.

A Python set of 20-byte ``bytes`` costs about 95 bytes a key (the object and
its slot). A crawl with millions of pending requests keeps several such sets
(the dupefilter's fingerprints, the frontier keys a resume has claimed), and
they, not the requests (which the spill queues keep on disk), would set its
memory. Here a key is hashed into one of 65,536 buckets by its first two
bytes, and the bucket is a ``bytearray`` of the other 18 bytes of each of its
keys, appended in arrival order: a lookup is one C-speed ``find`` in about a
kilobyte for 3 million keys, an insert is one append.

Keys are request fingerprints: 20 bytes (SHA1) with Scrapy's fingerprinter.
A key of another length is first hashed to 20 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

KEY_SIZE = 20
REST = KEY_SIZE - 2  # the bytes a bucket stores; the first two choose the bucket


class KeySet:
    __slots__ = ("buckets", "size")

    def __init__(self, keys: Iterable[bytes] = ()):
        self.buckets: list[bytearray | None] = [None] * 65536
        self.size = 0
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        return self.size

    def __contains__(self, key: bytes) -> bool:
        if len(key) != KEY_SIZE:
            key = hashlib.sha1(key).digest()
        bucket = self.buckets[key[0] << 8 | key[1]]
        if bucket is None:
            return False
        rest = key[2:]
        at = bucket.find(rest)
        return at >= 0 and (at % REST == 0 or found(bucket, rest, at))

    def add(self, key: bytes) -> bool:
        """Add ``key``; False if it was in the set already."""
        if len(key) != KEY_SIZE:
            key = hashlib.sha1(key).digest()
        index = key[0] << 8 | key[1]
        bucket = self.buckets[index]
        rest = key[2:]
        if bucket is None:
            self.buckets[index] = bytearray(rest)
        else:
            at = bucket.find(rest)
            if at >= 0 and (at % REST == 0 or found(bucket, rest, at)):
                return False
            bucket += rest
        self.size += 1
        return True


def found(bucket: bytearray, rest: bytes, at: int) -> bool:
    """Is ``rest`` one of the bucket's 18-byte records, past a match at ``at``
    that spans two records (at an offset not a multiple of 18)?"""
    while at >= 0:
        if at % REST == 0:
            return True
        at = bucket.find(rest, at + 1)
    return False
