"""The sandbox's stand-in for DNS of storage host names: an HTTPS ``CONNECT`` proxy for loopback clients.

Some SDK paths build the blob URL themselves, ``https://{account}.blob.{storage suffix}`` on port 443, instead of
taking the endpoint the sandbox hands out: azure-ai-ml's datastore transfers (``jobs.download``, uploading a local
model folder: ``_artifacts/_artifact_utilities.py`` ``get_datastore_info``). Such a name resolves nowhere on this
machine. With ``HTTPS_PROXY`` set to this proxy (and ``NO_PROXY=127.0.0.1`` so every other sandbox call
stays direct), ``CONNECT {account}.blob.{suffix}:443`` for an account the sandbox holds is tunnelled to the blob
front of the agent origin, which answers host-style requests like the real endpoint (firewall, RBAC and all).
Any other host is refused (403): the sandbox resolves its own storage names and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

STORAGE_SUFFIX = "core.sandbox.localhost"  # the cloud metadata's suffixes.storage (world/metadata.py)
_HOST_RE = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.blob\." + re.escape(STORAGE_SUFFIX) + r":443$", re.IGNORECASE)


def account_of_host(host: str) -> str | None:
    """``acct.blob.core.sandbox.localhost`` (with or without ``:443``) → ``acct``; None for any other name."""
    match = _HOST_RE.match(host if ":" in host else host + ":443")
    return match["account"].lower() if match else None


class _Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        request_line = self.rfile.readline(8192).decode("latin-1").strip()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass  # the CONNECT request's headers: nothing in them matters here
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        if method.upper() != "CONNECT":
            self._refuse(405, "Method Not Allowed", "only CONNECT is served")
            return
        account = account_of_host(target)
        port = server.target_port(account) if account else None
        if port is None:
            log.info("storage proxy refused CONNECT %s", target)
            self._refuse(403, "Forbidden", f"the sandbox does not resolve {target}")
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            self._refuse(502, "Bad Gateway", "the blob front is not answering")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        _pipe(self.connection, upstream)

    def _refuse(self, status: int, reason: str, text: str) -> None:
        body = (text + "\n").encode()
        self.wfile.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                         "\r\nConnection: close\r\n\r\n".encode() + body)


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [client, upstream]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 120)
            if broken or not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)
    except OSError:
        return
    finally:
        with contextlib.suppress(OSError):
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    target_port: Callable[[str], int | None]


@dataclass
class StorageProxy:
    server: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_storage_proxy(target_port: Callable[[str], int | None]) -> StorageProxy:
    """Serve on a free loopback port; ``target_port(account)`` is the blob front port for a known account."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.target_port = target_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                              name=f"sandbox-storage-proxy-{server.server_address[1]}")
    thread.start()
    return StorageProxy(server, thread)
