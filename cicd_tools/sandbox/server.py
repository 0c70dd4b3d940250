"""The sandbox's HTTPS plumbing: a threaded TLS server, a tiny router, faults, Azure-shaped errors.

Each provider module (``arm_storage``, ``msi``, ``control``...) exposes ``routes: list[Route]``;
the runtime includes them with one ``router.include(module.routes)`` each. Handlers take a
``Request`` and the ``Hub`` (what the running sandbox offers them) and return a ``Response``
or raise ``HttpError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.state import CloudState, Fault

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
CONTROL_PREFIX = "/_sandbox"
SECRET_HEADER = "X-Cicd-Sandbox-Secret"  # carries the per-sandbox secret on every control call


class Hub(Protocol):
    """What a running sandbox offers route handlers."""

    state: CloudState
    layout: SandboxLayout

    @property
    def arm_endpoint(self) -> str: ...

    @property
    def identity_header(self) -> str: ...

    @property
    def secret(self) -> str: ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def signing_key(self) -> bytes: ...

    def blob_endpoint_of(self, account: str, origin: str = "agent") -> str: ...

    def account_key(self, account: str) -> str: ...

    def origins_json(self) -> list[dict[str, Any]]: ...

    def add_origin(self, ip: str, name: str | None = None) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


@dataclass
class Request:
    """One parsed request (the body is read in full: ARM and control bodies are small)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    body: bytes
    client_ip: str
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    @property
    def target(self) -> str:
        return self.path + ("?" + "&".join(f"{k}={v}" for k, v in self.query) if self.query else "")

    def param(self, name: str) -> str | None:
        """A query parameter by case-insensitive name (first value)."""
        for key, value in self.query:
            if key.lower() == name.lower():
                return value
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        """The JSON body. Raises: HttpError 400 when it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(arm_error(400, "InvalidRequestContent", "The request content was invalid and "
                                      "could not be deserialized.")) from None

    def bearer_token(self) -> str | None:
        auth = self.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class HttpError(Exception):
    """Raised by a handler to answer with ``response`` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


RouteHandler = Callable[[Request, Hub], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # a regex with named groups, matched against the whole path, case-insensitively
    handler: RouteHandler
    service: str = "arm"  # arm | identity | control: what faults can target
    public: bool = False  # an ARM route Azure serves without a token (cloud metadata)
    audiences: tuple[str, ...] = ()  # token audiences accepted besides ARM's (Azure ML's data plane: ml.azure.com)


class Router:
    """Method + path regex -> handler."""

    def __init__(self) -> None:
        self._routes: list[tuple[Route, re.Pattern[str]]] = []

    def include(self, routes: Iterable[Route]) -> None:
        for route in routes:
            self._routes.append((route, re.compile(route.pattern, re.IGNORECASE)))

    def resolve(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route, its path parameters, and whether the path matched some other method."""
        path_known = False
        for route, regex in self._routes:
            match = regex.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict(), True
            path_known = True
        return None, {}, path_known


# -- response helpers ----------------------------------------------------------------------------------
def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    return Response(status, data, {"Content-Type": JSON_TYPE, **(headers or {})})


def arm_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """ARM's error body: ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def storage_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                  detail: str | None = None) -> Response:
    """The blob service's XML error body, with ``x-ms-error-code`` (what the SDK reads for HEAD).

    ``detail``: an ``AuthenticationErrorDetail`` element (what storage adds to a 401 for a bad token).
    """
    request_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    extra = f"<AuthenticationErrorDetail>{escape(detail)}</AuthenticationErrorDetail>" if detail else ""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>'
        f"{escape(code)}</Code><Message>{escape(message)}\nRequestId:{request_id}\nTime:{now}</Message>{extra}"
        "</Error>"
    ).encode()
    return Response(status, body, {
        "Content-Type": "application/xml",
        "x-ms-error-code": code,
        "x-ms-request-id": request_id,
        **(headers or {}),
    })


_PROVIDER_PATH = re.compile(r"/providers/(?P<ns>[A-Za-z0-9.]+)(?P<rest>(?:/[^/]+)*)$", re.IGNORECASE)
COVERAGE_PAGE = "docs/sandbox-coverage.md"


def operation_name(method: str, path: str) -> str:
    """A readable name of the ARM operation a request asks for: ``POST Microsoft.Storage/storageAccounts/listKeys``.

    The provider namespace and the resource types along the path (names dropped); paths without a provider keep
    their own types (``GET subscriptions/resourceGroups``); other paths (identity, metadata) are named as they are.
    """
    match = _PROVIDER_PATH.search(path.rstrip("/"))
    if match is None:
        segments = [s for s in path.strip("/").split("/") if s]
        if [s.lower() for s in segments[:1]] != ["subscriptions"]:
            return f"{method} {path}"  # not ARM's type/name alternation (identity, metadata): the path itself
        return f"{method} {'/'.join(segments[0::2])}"
    types = [s for s in match["rest"].strip("/").split("/") if s]
    # ARM alternates type/name; an odd count ends with an action or a collection (listKeys, versions).
    kept = types[0::2]
    return f"{method} {match['ns']}/{'/'.join(kept)}".rstrip("/")


def not_emulated(req: Request) -> Response:
    """501 ``NotImplemented`` naming the operation: Azure serves it, the sandbox does not emulate it."""
    operation = operation_name(req.method, req.path)
    return arm_error(501, "NotImplemented", f"The sandbox does not emulate the operation '{operation}' "
                     f"({req.method} {req.path}); {COVERAGE_PAGE} lists what it emulates.")


DEFAULT_FAULT_CODES = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServerBusy"}


def fault_response(fault: Fault, *, xml: bool) -> Response:
    """The answer a ``status`` fault gives: Azure's error shape for the service, Retry-After if set."""
    code = fault.code or DEFAULT_FAULT_CODES.get(fault.status, "SandboxInjectedFault")
    message = fault.message or f"Injected by the sandbox (fault {fault.id})."
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(max(0, round(fault.retry_after)))
        headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
    return storage_error(fault.status, code, message, headers) if xml else arm_error(
        fault.status, code, message, headers
    )


# -- the server ---------------------------------------------------------------------------------------
class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded server that stays quiet when clients hang up (or a fault drops them)."""

    daemon_threads = True
    allow_reuse_address = True

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        # Headers and body leave in separate writes: without this, Nagle + delayed ACK stall each answer 40 ms.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class RunningServer:
    server: SandboxHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_server(
    handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext, *, port: int = 0, **attrs: Any
) -> RunningServer:
    """Serve ``handler`` over TLS on 127.0.0.1:port in a daemon thread; ``attrs`` land on the server."""
    server = SandboxHTTPServer(("127.0.0.1", port), handler)
    # The TLS handshake runs in the handler thread (first read), so a slow client cannot stall accept().
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    for name, value in attrs.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                              name=f"sandbox-{handler.__name__}-{server.server_address[1]}")
    thread.start()
    return RunningServer(server, thread)


def read_body(rfile: Any, headers: Message) -> bytes:
    """The whole request body, with Content-Length or chunked framing."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return b"".join(iter_chunked(rfile))
    length = int(headers.get("Content-Length") or 0)
    return rfile.read(length) if length > 0 else b""


def iter_chunked(rfile: Any) -> Iterable[bytes]:
    """Decode a chunked body from ``rfile`` (trailers are read and dropped)."""
    while True:
        size_line = rfile.readline(65537)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return
        yield rfile.read(size)
        rfile.readline(3)  # the CRLF after each chunk


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the client's socket without an answer (what a dropped connection looks like)."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def check_secret(req: Request, hub: Hub) -> Response | None:
    """None when the request carries this sandbox's secret; else 401 (missing) or 403 (wrong), as JSON."""
    given = req.header(SECRET_HEADER)
    if not given:
        return arm_error(401, "SandboxSecretRequired", f"The sandbox control endpoint needs the {SECRET_HEADER} "
                         "header with the sandbox's secret (CICD_SANDBOX_SECRET from `cicd-tools sandbox env`).")
    if not hmac.compare_digest(given.encode(), hub.secret.encode()):
        return arm_error(403, "SandboxSecretMismatch", f"The {SECRET_HEADER} header does not hold this sandbox's "
                         "secret.")
    return None


# ``armbase.authenticate``, registered by armbase when it is imported (it builds on this module, so this module
# cannot import it). Until then every ARM route fails closed.
_arm_authenticator: Callable[..., Any] | None = None


def set_arm_authenticator(authenticate: Callable[..., Any]) -> None:
    """Install the check every non-public ARM route passes (``armbase`` calls this)."""
    global _arm_authenticator
    _arm_authenticator = authenticate


def gate(route: Route | None, service: str, req: Request, hub: Hub) -> Response | None:
    """Who may call at all: control calls need the sandbox secret, ARM calls a token the sandbox signed."""
    if service == "control":
        return check_secret(req, hub)
    if route is not None and route.service == "arm" and not route.public:
        if _arm_authenticator is None:
            return arm_error(401, "AuthenticationFailed", "Authentication failed: no ARM authenticator is loaded.")
        try:
            _arm_authenticator(req, hub, also_for=route.audiences)
        except HttpError as err:
            return err.response
    return None


class ArmHandler(BaseHTTPRequestHandler):
    """The ARM port: ARM providers, the identity endpoint, cloud metadata and the control endpoint."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("arm %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        hub: Hub = self.server.hub  # type: ignore[attr-defined]
        router: Router = self.server.router  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        body = read_body(self.rfile, self.headers)
        req = Request(self.command, parts.path, parse_qsl(parts.query, keep_blank_values=True), self.headers,
                      body, self.client_address[0])
        route, params, path_known = router.resolve(self.command, parts.path)
        service = route.service if route else "arm"
        if parts.path.lower().startswith(CONTROL_PREFIX):
            service = "control"
        started = time.monotonic()
        response = gate(route, service, req, hub)
        if response is None:
            response = self._faulted(hub, service, req)
        if response is None:
            req.params = params
            response = self._handle(route, path_known, req, hub)
        if service != "control":
            hub.state.record(service=service, method=req.method, path=req.path, status=response.status,
                             elapsed=round(time.monotonic() - started, 4), started=started)
        self._write(response)

    def _faulted(self, hub: Hub, service: str, req: Request) -> Response | None:
        if service == "control":
            return None
        fault = hub.state.take_fault(service, req.method, req.target)
        if fault is None:
            return None
        if fault.kind == "drop":
            return Response(0, drop=True)
        if fault.kind == "delay":
            time.sleep(fault.delay)
            return None
        return fault_response(fault, xml=False)

    def _handle(self, route: Route | None, path_known: bool, req: Request, hub: Hub) -> Response:
        if route is None:
            if not req.path.lower().startswith(CONTROL_PREFIX):
                return not_emulated(req)  # Azure serves it; the sandbox does not: never a NotFound a client trusts
            if path_known:
                return arm_error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed here.")
            return arm_error(404, "NotFound", f"No sandbox control route for '{req.path}'.")
        try:
            return route.handler(req, hub)
        except HttpError as err:
            return err.response
        except Exception:
            log.exception("sandbox handler for %s %s failed", req.method, req.path)
            return arm_error(500, "InternalServerError", "The sandbox failed to handle the request.")

    def _write(self, response: Response) -> None:
        if response.drop:
            drop_connection(self)
            return
        self.send_response(response.status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": str(uuid.uuid4()),
                   **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)
