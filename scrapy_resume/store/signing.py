"""Signed request blobs: a checkpoint holds pickles, so it must not be forged.

Every stored request carries an HMAC keyed by a secret file in the checkpoint
directory (0600), and one that does not verify is never unpickled.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from scrapy_resume.store.base import CheckpointTampered
from scrapy_resume.store.privatefiles import (
    CheckpointUnsafe,
    open_private,
    private_directory,
    write_new_file,
)

#: The secret that signs stored requests, one per checkpoint directory.
SECRET_FILE = "checkpoint.secret"
SECRET_LENGTH = 32


def load_or_create_secret(directory: Path) -> bytes:
    """The directory's secret, created whole the first time (two processes
    starting together agree on one)."""
    path = directory / SECRET_FILE
    secret = _read_secret(path)
    if secret is None:
        private_directory(directory)
        write_new_file(path, secrets.token_bytes(SECRET_LENGTH))
        secret = _read_secret(path)
        assert secret is not None
    return secret


def _read_secret(path: Path) -> bytes | None:
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointUnsafe(
                f"{path} is a symbolic link: the signing secret is never read through one "
                f"(anyone who can point it at a file they know can forge stored requests)."
            ) from None
        raise
    try:
        secret = os.read(fd, SECRET_LENGTH + 1)
    finally:
        os.close(fd)
    if len(secret) != SECRET_LENGTH:
        raise CheckpointUnsafe(
            f"{path} holds {len(secret)} bytes, not {SECRET_LENGTH}: it was cut short (an "
            f"older version killed while writing it) or replaced, so stored requests signed "
            f"with it could be forged. Delete it, and start the stages of this directory "
            f"over with -s CHECKPOINT_RESET=1."
        )
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

    def has_secret(self) -> bool:
        return (self.directory / SECRET_FILE).exists()


def signature_problems(signer: RequestSigner,
                       stored: Iterable[tuple[bytes, bytes, str]]) -> list[str]:
    """What is wrong with the signatures of stored requests ``(key, blob, url)``:
    a blob that fails verification was changed (or forged) outside scrapy-resume."""
    forged: list[str] = []
    total = 0
    for key, blob, url in stored:
        total += 1
        if not signer.has_secret():
            return [f"{total}+ stored requests, and no {SECRET_FILE} to verify them with "
                    f"in {signer.directory}: it was deleted or moved"]
        try:
            signer.verified(key, blob, url)
        except CheckpointTampered:
            forged.append(url)
    if not forged:
        return []
    return [f"{len(forged):,} of {total:,} stored requests fail their signature (changed or "
            f"forged outside scrapy-resume; a resume stops at the first one, "
            f"checkpoint_tampered), e.g. {', '.join(forged[:3])}"]
