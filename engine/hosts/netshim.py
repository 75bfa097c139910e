"""Loopback endpoints inside a sandbox that has no network (``network = "none"`` + ``allow``).

Run inside the sandbox as ``python netshim.py PORT=SOCKET ... -- COMMAND...``: for each pair it
listens on ``127.0.0.1:PORT`` in the sandbox's own (empty) network namespace and forwards every
connection to the unix socket ``SOCKET``, which mc's relay outside connects to the real
``127.0.0.1:PORT`` (:class:`engine.hosts.relay.UnixRelay`). Then it runs ``COMMAND`` and exits
with its exit code. Nothing else is reachable. Standalone on purpose (no imports from mc): it
runs with the sandbox's view of the file system.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def serve(port: int, path: str) -> socket.socket:
    server = socket.create_server(("127.0.0.1", port))

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(path)
            except OSError:
                conn.close()
                continue
            threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    for pair in argv[:sep]:
        port, path = pair.split("=", 1)
        serve(int(port), path)
    return subprocess.call(argv[sep + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
