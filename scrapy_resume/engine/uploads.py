"""Uploading the batches of a remote batched feed (S3, GCS, FTP), once each.

Scrapy uploads a batch when its slot closes: what it exported, not what was
committed, and a restarted crawl numbers its batches from 1 again,
uploading over them. Here a remote feed's batch files are staged locally
and written through the checkpoint like a local batched feed's (see
batchedfeed.py). A batch is uploaded once it is finished for good (full and
committed, or the last one when the stage completes), then recorded as
uploaded in the stage and its local file removed. A resume uploads the
finished batches that were not recorded, and never writes to a batch that
was: only a kill between the end of an upload and its record (a few
milliseconds) uploads one again, the same bytes to the same URI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed

if TYPE_CHECKING:
    from twisted.python.failure import Failure

logger = logging.getLogger(__name__)

#: The state entry that holds every remote batch file: key -> {"uri", "uploaded"}.
STATE = "feed_uploads"

#: The folder, beside the stage, where its remote batch files are staged: STAGE.uploads
STAGING_SUFFIX = ".uploads"

#: Uploads a local file to a URI; fires when it is stored.
Send = Callable[[str, str], "Deferred[Any]"]


class BatchUploads:
    """The stage's remote batch files: where each goes, which are uploaded,
    and the uploads waiting. One upload at a time, in the order the batches
    were finished: a consumer sees them in order, and two uploads never race
    to create the same remote folder (FTP answers the second "550 File
    exists")."""

    def __init__(self, stats: Any = None):
        self.stats = stats
        self.entries: dict[str, dict] = {}  # by key (see FeedFiles)
        self.waiting: dict[str, Send] = {}  # in order
        self.sending: str | None = None
        self.idle: list[Deferred[None]] = []  # fired when nothing is left to send
        self.failed: set[str] = set()  # sent again when the stage ends, or by a resume
        self.record: Callable[[dict], None] | None = None  # commits the state entry
        self.path_of: Callable[[str], str] = str  # a key's local path

    def load(self, entries: dict[str, dict], record: Callable[[dict], None],
             path_of: Callable[[str], str]) -> None:
        self.entries = {key: dict(entry) for key, entry in entries.items()}
        self.record = record
        self.path_of = path_of

    def announce(self, uris: dict[str, str]) -> dict[str, Any]:
        """New batch files and their URIs: the state their announcing commit records."""
        for key, uri in uris.items():
            self.entries[key] = {"uri": uri, "uploaded": False}
        return {STATE: self.state()}

    def state(self) -> dict[str, dict]:
        return {key: dict(entry) for key, entry in self.entries.items()}

    def uploaded(self, key: str) -> bool:
        return bool(self.entries.get(key, {}).get("uploaded"))

    def upload(self, key: str, send: Send, *, retry: bool = False) -> None:
        """Upload a finished, committed batch file unless it is uploaded or on
        its way (after a failure, only when ``retry``)."""
        entry = self.entries.get(key)
        if entry is None or entry["uploaded"] or key == self.sending or key in self.waiting:
            return
        if key in self.failed and not retry:
            return
        self.failed.discard(key)
        self.waiting[key] = send
        self._send_next()

    def _send_next(self) -> None:
        if self.sending is not None:
            return
        if not self.waiting:
            idle, self.idle = self.idle, []
            for waiter in idle:
                waiter.callback(None)
            return
        key = next(iter(self.waiting))
        send = self.waiting.pop(key)
        self.sending = key
        path, uri = self.path_of(key), self.entries[key]["uri"]
        sending = maybeDeferred(send, path, uri)  # (an error raised is a failed upload)
        sending.addCallbacks(self._uploaded, self._failed, callbackArgs=(key, path, uri),
                             errbackArgs=(key, path, uri))
        sending.addBoth(self._sent)

    def _sent(self, _: Any) -> None:
        self.sending = None
        self._send_next()

    def _uploaded(self, _: Any, key: str, path: str, uri: str) -> None:
        self.entries[key]["uploaded"] = True
        try:
            assert self.record is not None
            self.record({STATE: self.state()})
        except Exception as exc:
            self.entries[key]["uploaded"] = False
            logger.warning(
                "Uploaded %s to %s, but could not record it (%s): a resume uploads it again, "
                "the same bytes to the same place", path, uri, exc,
            )
            return
        os.remove(path)
        logger.info("Uploaded batch %s (committed) to %s", os.path.basename(path), uri)
        if self.stats is not None:
            self.stats.inc_value("checkpoint/feed_batches_uploaded")

    def _failed(self, failure: Failure, key: str, path: str, uri: str) -> None:
        self.failed.add(key)
        logger.error(
            "Could not upload %s to %s (%s). The batch is kept there, and uploaded again "
            "when the stage ends, or by a resume (-s CHECKPOINT_RESUME=1).",
            path, uri, failure.getErrorMessage(),
        )
        if self.stats is not None:
            self.stats.inc_value("checkpoint/feed_upload_errors")

    def forget(self, keys: set[str]) -> None:
        """Announced batch files no record came to (the stage is completed)."""
        for key in keys:
            self.entries.pop(key, None)

    def wait(self) -> Deferred[None]:
        """Fires when every upload asked for has ended, well or not."""
        if self.sending is None and not self.waiting:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self.idle.append(waiter)
        return waiter

    def not_uploaded(self) -> list[str]:
        """The local paths of the batch files finished or not, not uploaded yet."""
        return [self.path_of(key) for key, entry in self.entries.items()
                if not entry["uploaded"]]
