"""Redis clients, and who is who: server identity, worker ids, liveness."""

from __future__ import annotations

import logging
import os
import socket
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
    with backoff from 0.1 s to 1 s, for about ``seconds``; then it raises (a crawl
    then stops with checkpoint_write_error, and resumes once the server is back).
    The first failed attempt of each call logs one warning, not a traceback."""
    if seconds <= 0:
        return {}
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError
    from redis.retry import Retry

    class LoggedBackoff(ExponentialBackoff):
        def compute(self, failures: int) -> float:
            if failures == 1:
                logger.warning("Lost the connection to Redis: reconnecting, with backoff, for "
                               "up to %s s (CHECKPOINT_REDIS_RETRY_SECONDS)", seconds)
            return super().compute(failures)

    retries = int(seconds / RETRY_CAP) + 4  # (the first four pauses add up to 1.5 s)
    return {"retry": Retry(LoggedBackoff(cap=RETRY_CAP, base=0.05), retries),
            "retry_on_error": [ConnectionError, TimeoutError]}


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
