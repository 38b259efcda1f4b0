"""Redis clients, and who is who: server identity, worker ids, liveness."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

#: The longest pause between two attempts to reach a Redis server that went away.
RETRY_CAP = 1.0


def client_for(url: str, retry_seconds: float = 0.0) -> Any:
    """A client for ``redis://HOST:PORT/DB`` (bytes in, bytes out) that waits out
    a server restart for up to ``retry_seconds`` (see :func:`retrying`)."""
    import redis

    return redis.Redis.from_url(url, decode_responses=False, **retrying(retry_seconds))


def retrying(seconds: float) -> dict[str, Any]:
    """redis-py's client arguments for a server that goes away (a restart, a
    failover): a call that finds the connection lost reconnects and tries again,
    with backoff from 0.1 s to 1 s, until the server has been unreachable for
    ``seconds`` (one outage, however many calls wait on it); then every call
    raises at once (a crawl then stops with checkpoint_write_error, and resumes
    once the server is back). An outage logs one warning, not a traceback."""
    if seconds <= 0:
        return {}
    from redis.exceptions import ConnectionError, TimeoutError

    return {"retry": outage_retry(seconds), "retry_on_error": [ConnectionError, TimeoutError]}


def outage_retry(seconds: float) -> Any:
    """A redis-py Retry that keeps trying for ``seconds`` of one outage."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError
    from redis.retry import Retry

    class OutageBackoff(ExponentialBackoff):
        """The pause before the next attempt; past the outage's time, an error instead
        (raised here, it ends the retries of the call)."""

        def __init__(self) -> None:
            super().__init__(cap=RETRY_CAP, base=0.05)
            self.down_since: float | None = None  # the outage, shared by every call

        def compute(self, failures: int) -> float:
            now = time.monotonic()
            if self.down_since is None:
                self.down_since = now
                logger.warning("Lost the connection to Redis: reconnecting, with backoff, for "
                               "up to %s s (CHECKPOINT_REDIS_RETRY_SECONDS)", seconds)
            if now - self.down_since > seconds:
                raise ConnectionError(f"Redis unreachable for more than {seconds} s "
                                      f"(CHECKPOINT_REDIS_RETRY_SECONDS)")
            return super().compute(failures)

    class OutageRetry(Retry):
        def __init__(self) -> None:
            self.backoff = OutageBackoff()
            super().__init__(self.backoff, retries=-1)

        def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
            def attempt() -> Any:
                result = do()
                self.backoff.down_since = None  # the server answers again
                return result

            return super().call_with_retry(attempt, fail, *args, **kwargs)

    return OutageRetry()


def server_identity(client: Any) -> tuple[str, int, int]:
    """``(host, port, db)`` of a client: do two clients talk to the same data?"""
    kwargs = client.connection_pool.connection_kwargs
    return (
        str(kwargs.get("host", "localhost")).replace("localhost", "127.0.0.1"),
        int(kwargs.get("port", 6379)),
        int(kwargs.get("db", 0)),
    )


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/0'}"


def this_host() -> str:
    return socket.gethostname()


def new_worker_id() -> str:
    """``host:pid:random``: a restarted process is a new worker."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_is_gone(worker_id: str) -> bool:
    """A worker of this host whose process no longer exists (killed, crashed)."""
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    if host != this_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def server_time_ms(client: Any) -> int:
    seconds, microseconds = client.time()
    return seconds * 1000 + microseconds // 1000
