"""A TCP proxy in front of a real redis-server that can lose a reply.

A reply lost is what a client sees when the connection drops after the server
ran its command (a restart, a failover, a network blip): redis-py, told to
retry on connection errors, sends the command again. The proxy listens on
127.0.0.1 and a free port; armed with a marker (e.g. a Lua script's SHA), it
forwards the next command that holds it, lets the server run it, then closes
that connection instead of passing the reply on.
"""

from __future__ import annotations

import socket
import threading


class ReplyLosingProxy:
    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.markers: list[bytes] = []  # each loses the reply to one command that holds it
        self.lost = 0  # replies lost so far
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def lose_reply_to(self, marker: bytes, times: int = 1) -> None:
        with self.lock:
            self.markers += [marker] * times

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(("127.0.0.1", self.server_port))
            state = {"lose_next_reply": False}
            threading.Thread(target=self._commands, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, state),
                             daemon=True).start()

    def _commands(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        while data := _recv(client):
            with self.lock:
                marker = next((m for m in self.markers if m in data), None)
                if marker is not None:
                    self.markers.remove(marker)
                    state["lose_next_reply"] = True
            try:
                server.sendall(data)
            except OSError:
                break
        _close(client, server)

    def _replies(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        # redis-py has one command in flight per connection: the next reply is its own
        while data := _recv(server):
            if state["lose_next_reply"]:
                with self.lock:
                    self.lost += 1
                break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client, server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
