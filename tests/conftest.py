from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.redisserver import RedisServer

TESTS = Path(__file__).parent


class MockServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "mockserver.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base = self.proc.stdout.readline().strip()
        assert self.base.startswith("http://127.0.0.1:"), self.base
        self._names = itertools.count()

    def namespace(self) -> str:
        return f"ns{next(self._names)}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def hits(self, ns: str) -> dict[str, int]:
        with urllib.request.urlopen(self.url(f"_hits/{ns}")) as response:
            return json.load(response)

    def arm(self, ns: str, pid: int, **options: object) -> None:
        query = "&".join(f"{k}={v}" for k, v in {"pid": pid, **options}.items())
        with urllib.request.urlopen(self.url(f"_arm/{ns}?{query}")) as response:
            assert response.read() == b"armed"

    def release(self, ns: str) -> None:
        """Answer the pages an arm with ``hold=1`` kept waiting, and stop holding."""
        with urllib.request.urlopen(self.url(f"_release/{ns}")) as response:
            assert response.read() == b"released"

    def wait_for_hits(self, ns: str, count: int, timeout: float = 60) -> None:
        """Poll until the namespace has had ``count`` hits: a crawl is under way."""
        deadline = time.monotonic() + timeout
        while sum(self.hits(ns).values()) < count:
            assert time.monotonic() < deadline, f"{ns} got fewer than {count} hits"
            time.sleep(0.05)

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url(path)) as response:
            return json.load(response)

    def expire_sessions(self, ns: str) -> None:
        """End every login session of the namespace, as a server-side expiry would."""
        with urllib.request.urlopen(self.url(f"_expire/{ns}")) as response:
            assert response.read() == b"expired"

    def configure(self, ns: str, *, delay_ms: int) -> None:
        with urllib.request.urlopen(self.url(f"_config/{ns}?delay={delay_ms}")) as response:
            assert response.read() == b"configured"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def mockserver():
    server = MockServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    from tests.pgserver import PostgresServer, postgres_binaries

    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql; .ci/run "
                    "installs it): the PostgreSQL tests cannot run")
    server = PostgresServer()
    yield server
    server.destroy()
