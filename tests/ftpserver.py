"""A real FTP server (pyftpdlib) on 127.0.0.1 and a free port, serving a
temporary directory, that counts every file it receives."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

USER, PASSWORD = "crawler", "s3cret"
WRITABLE, READ_ONLY = "elradfmw", "elr"


class FTPServer:
    def __init__(self, root: Path):
        self.root = root
        self.received: Counter[str] = Counter()  # path under root -> uploads
        self.authorizer = DummyAuthorizer()
        self.authorizer.add_user(USER, PASSWORD, str(root), perm=WRITABLE)
        server = self

        class Handler(FTPHandler):
            authorizer = self.authorizer

            def on_file_received(self, file: str) -> None:
                server.received[Path(file).relative_to(server.root).as_posix()] += 1

        Handler.passive_ports = None  # any free port
        self.server = ThreadedFTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def uri(self, path: str) -> str:
        return f"ftp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{path}"

    def allow_uploads(self, allowed: bool) -> None:
        self.authorizer.user_table[USER]["perm"] = WRITABLE if allowed else READ_ONLY

    def __enter__(self) -> FTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close_all()
        self.thread.join(10)
