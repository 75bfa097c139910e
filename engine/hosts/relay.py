"""The outside half of a sandbox's allowed loopback endpoint: a unix socket relayed to TCP.

One :class:`UnixRelay` per allowed ``host:port`` of a sandbox host, started on first use and
kept for the process's life (daemon threads): each connection to its unix socket is piped to
a new TCP connection to the endpoint. The socket's folder is bound into the sandbox, where
``engine/hosts/netshim.py`` listens on ``127.0.0.1:<port>`` and forwards to it.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

from engine.hosts.netshim import pipe


class UnixRelay:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.folder = Path(tempfile.mkdtemp(prefix="mc-relay-"))
        self.path = self.folder / f"{port}.sock"
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(self.path))
        self._server.listen(64)
        threading.Thread(target=self._loop, daemon=True, name=f"mc-relay-{port}").start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()


_relays: dict[tuple[str, int], UnixRelay] = {}
_lock = threading.Lock()


def relay_for(endpoint: str) -> UnixRelay:
    """The (started) relay of ``host:port``."""
    host, _, port = endpoint.rpartition(":")
    key = (host or "127.0.0.1", int(port))
    with _lock:
        if key not in _relays:
            _relays[key] = UnixRelay(*key)
        return _relays[key]
