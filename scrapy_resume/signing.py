"""Signed request blobs: a checkpoint holds pickles, so it must not be forged.

Every stored request carries an HMAC keyed by a secret file in the checkpoint
directory (0600), and one that does not verify is never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .store import CheckpointTampered

#: The secret that signs stored requests, one per checkpoint directory.
SECRET_FILE = "checkpoint.secret"


def load_or_create_secret(directory: Path) -> bytes:
    path = directory / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class RequestSigner:
    """Signs and verifies stored requests with the directory's secret, read when
    first needed."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._secret: bytes | None = None

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_or_create_secret(self.directory)
        return self._secret

    def _mac(self, key: bytes, blob: bytes) -> bytes:
        """Binds the blob to its ledger key: a valid blob cannot be moved to another row."""
        return hmac.new(self.secret, key + blob, hashlib.sha256).digest()

    def sign(self, key: bytes, blob: bytes) -> bytes:
        return self._mac(key, blob) + blob

    def verified(self, key: bytes, stored: bytes, url: str) -> bytes:
        mac, blob = stored[:32], stored[32:]
        if not hmac.compare_digest(mac, self._mac(key, blob)):
            raise CheckpointTampered(key, url)
        return blob
