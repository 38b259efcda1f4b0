"""Redis clients, and who is who: server identity, worker ids, liveness."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit


def client_for(url: str) -> Any:
    """A client for ``redis://HOST:PORT/DB`` (bytes in, bytes out)."""
    import redis

    return redis.Redis.from_url(url, decode_responses=False)


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
