"""A TCP forwarder on 127.0.0.1 that a test can take down and bring back.

It stands between a process under test and the real PostgreSQL. ``down()`` cuts every
forwarded connection and resets new ones at once (the listener stays, so the port cannot
be lost to another socket while the database is "away"); ``up()`` forwards again.
Threads, so it works without a reactor.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``down()`` / ``up()`` switch it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._forwarding = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        """Forward new connections to the target again."""
        self._forwarding = True

    def down(self) -> None:
        """Cut every forwarded connection and reset new ones."""
        self._forwarding = False
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            _reset(s)

    def close(self) -> None:
        """Stop listening and cut everything."""
        self.down()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._forwarding:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _reset(s: socket.socket) -> None:
    """Close with an RST, so the peer fails at once.

    ``shutdown`` first: a plain ``close`` does not wake a thread blocked in ``recv`` on
    the socket, and the kernel keeps the connection open until it returns.
    """
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
