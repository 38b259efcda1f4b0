"""How a feed format frames its records in a file, so a file can be cut back
to a record boundary and continued.

* Record formats (JSON lines, pickle, marshal) are a plain sequence of
  records: any record boundary is a valid end of file.
* CSV is the same after its header line (written once per file).
* Document formats (a JSON array, XML) are a header (``[``, or the XML
  declaration and the root's start tag), records with a separator between two
  of them (``,``), and a trailer (``]``, the root's end tag). The committed
  offset is always after a record (or after the header), before the trailer: a
  resume cuts the trailer off, goes on appending records with their separator,
  and the trailer is written again when the stage pauses or finishes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framing:
    kind: str  # "records", "csv" or "document"
    header: bytes = b""  # a document's header, exactly as its exporter writes it
    separator: bytes = b""  # written before every record but a document's first
    trailer: bytes = b""  # a document's end, as its exporter writes it

    @property
    def is_document(self) -> bool:
        return self.kind == "document"


RECORDS = Framing("records")
CSV = Framing("csv")
