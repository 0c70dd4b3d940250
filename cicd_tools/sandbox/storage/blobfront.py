"""The blob front: the storage firewall and RBAC in front of Azurite, one HTTPS port per network origin.

An *origin* stands for where traffic comes from: a public IP (the CI agent, extra workers) or the
managed private endpoint (never subject to IP rules). Per request: faults, then the firewall
(403 ``AuthorizationFailure``; ``bypass: AzureServices`` as ``storage.trusted`` decides), then authentication
(401 ``InvalidAuthenticationInfo`` for a bearer token the sandbox did not sign for storage, or an expired one),
then authorization (403 ``AuthorizationPermissionMismatch`` for a token whose principal lacks the data role,
``KeyBasedAuthenticationNotPermitted`` for shared key or a key-signed SAS when ``allowSharedKeyAccess`` is
false), then the request is streamed to Azurite (path-style ``/{account}/...``). Azurite takes no tokens: a request
the front admitted with a token is forwarded signed with the account key instead (``storage.resign``), and Get User
Delegation Key is answered here; shared key and SAS requests are forwarded as they came, for Azurite to check.
Public origins also answer ``/_echo/*`` with their IP.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cicd_tools.sandbox.identity.identity import (
    SANDBOX_TENANT,
    STORAGE_AUDIENCE,
    TokenError,
    decode_token,
    verify_token,
)
from cicd_tools.sandbox.layout import BLOB_READ, BLOB_WRITE
from cicd_tools.sandbox.server import (
    Hub,
    Response,
    drop_connection,
    fault_response,
    iter_chunked,
    storage_error,
)
from cicd_tools.sandbox.storage.connect_proxy import account_of_host
from cicd_tools.sandbox.storage.resign import MAX_KEY_INFO, resigned_headers, user_delegation_key
from cicd_tools.sandbox.storage.trusted import bypass_admits

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade"})
UPSTREAM_IDLE = 2.0  # reconnect to Azurite after this idle time (its keep-alive timeout is 5 s)
FIREWALL_MESSAGE = "This request is not authorized to perform this operation."
RBAC_MESSAGE = "This request is not authorized to perform this operation using this permission."
KEY_MESSAGE = "Key based authentication is not permitted on this storage account."
AUTHN_MESSAGE = ("Server failed to authenticate the request. Please refer to the information in the "
                 "www-authenticate header.")
TOKEN_DETAILS = {"expired": "Lifetime validation failed. The token is expired.",
                 "not-yet-valid": "Lifetime validation failed. The token is not yet valid.",
                 "audience": "Audience validation failed. Audience did not match.",
                 "signature": "Signature validation failed. Signature is invalid.",
                 "malformed": "Signature validation failed. The token is malformed."}


@dataclass(frozen=True)
class Origin:
    """A network vantage point: its simulated source IP, and whether it is the private endpoint."""

    name: str
    ip: str
    private_endpoint: bool
    port: int

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def blob_endpoint(self, account: str) -> str:
        return f"{self.base_url}/{account}"

    @property
    def echo_urls(self) -> tuple[str, str]:
        """Two independent IP echo services (api.ipify.org-like and checkip.amazonaws.com-like)."""
        return (f"{self.base_url}/_echo/ip", f"{self.base_url}/_echo/checkip")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ip": self.ip, "privateEndpoint": self.private_endpoint, "port": self.port,
                "baseUrl": self.base_url, "echoUrls": [] if self.private_endpoint else list(self.echo_urls)}


def is_write(method: str, query: dict[str, str]) -> bool:
    """Whether a blob request needs the write data action (the user delegation key is a read)."""
    if method in ("GET", "HEAD"):
        return False
    return not (method == "POST" and query.get("comp") == "userdelegationkey")


def token_refusal(hub: Hub, account: str, token: str) -> tuple[Response | None, dict[str, object]]:
    """(None, claims) for a storage token this sandbox signed; else storage's 401 ``InvalidAuthenticationInfo``."""
    try:
        claims = verify_token(token, hub.signing_key)
        audience = str(claims.get("aud", "")).rstrip("/")
        if audience not in (STORAGE_AUDIENCE, f"https://{account}.blob.core.windows.net"):
            raise TokenError("audience", "wrong audience")
    except TokenError as err:
        challenge = (f"Bearer authorization_uri=https://login.microsoftonline.com/{SANDBOX_TENANT}/oauth2/authorize "
                     f"resource_id={STORAGE_AUDIENCE}")
        return storage_error(401, "InvalidAuthenticationInfo", AUTHN_MESSAGE, {"WWW-Authenticate": challenge},
                             detail=TOKEN_DETAILS[err.reason]), {}
    return None, claims


def auth_denial(hub: Hub, account: str, method: str, authorization: str, query: dict[str, str]) -> Response | None:
    """The 401/403 Azure gives for this caller, or None to let Azurite authenticate it."""
    scheme, _, credential = authorization.partition(" ")
    scheme = scheme.lower()
    action = BLOB_WRITE if is_write(method, query) else BLOB_READ
    resource = hub.layout.account_id(account)
    shared_key_allowed = hub.state.account(account).allow_shared_key_access is not False
    if scheme == "bearer":
        refusal, claims = token_refusal(hub, account, credential.strip())
        if refusal is not None:
            return refusal
        if not hub.state.authorize(str(claims.get("oid", "")), resource, action, data=True):
            return storage_error(403, "AuthorizationPermissionMismatch", RBAC_MESSAGE)
        return None
    if scheme in ("sharedkey", "sharedkeylite"):
        return None if shared_key_allowed else storage_error(403, "KeyBasedAuthenticationNotPermitted", KEY_MESSAGE)
    if "sig" in query:
        if "skoid" in query:  # a user delegation SAS is Entra-backed: its signer needs the data role
            if not hub.state.authorize(query["skoid"], resource, action, data=True):
                return storage_error(403, "AuthorizationPermissionMismatch", RBAC_MESSAGE)
            return None
        return None if shared_key_allowed else storage_error(403, "KeyBasedAuthenticationNotPermitted", KEY_MESSAGE)
    return None


def _principal_name(authorization: str) -> str | None:
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return scheme.lower() or None
    try:
        return str(decode_token(credential.strip()).get("name"))
    except ValueError:
        return None


class BlobFrontHandler(BaseHTTPRequestHandler):
    """One origin's HTTPS listener: firewall, RBAC, then a streaming proxy to Azurite."""

    protocol_version = "HTTP/1.1"
    server_version = "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPSConnection | None = None
        self._upstream_used = 0.0
        self._host_style: str | None = None
        self._upstream_path = ""
        self._body_read = False

    def finish(self) -> None:
        self._close_upstream()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("blob %s " + format, self.server.origin.name, *args)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- request flow ------------------------------------------------------------------------------------
    def _serve(self) -> None:
        hub: Hub = self.server.hub  # type: ignore[attr-defined]
        origin: Origin = self.server.origin  # type: ignore[attr-defined]
        host = self.headers.get("Host") or ""
        host_account = account_of_host(host)
        self._host_style = host if host_account is not None else None  # Azurite is told the same host and path
        self._upstream_path = self.path
        self._body_read = False
        if host_account is not None:  # host-style, through the storage proxy: path-style for the checks here
            self.path = f"/{host_account}{self.path}"
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        authorization = self.headers.get("Authorization") or ""
        service = "echo" if parts.path.startswith("/_echo/") else "blob"
        started = time.monotonic()
        status = self._decide_and_answer(hub, origin, service, parts.path, query, authorization)
        hub.state.record(service=service, method=self.command, path=parts.path, status=status,
                         origin=origin.name, ip=origin.ip, principal=_principal_name(authorization),
                         elapsed=round(time.monotonic() - started, 4), started=started)

    def _decide_and_answer(
        self, hub: Hub, origin: Origin, service: str, path: str, query: dict[str, str], authorization: str
    ) -> int:
        fault = hub.state.take_fault(service, self.command, self.path)
        if fault is not None and fault.kind == "drop":
            drop_connection(self)
            return 0
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
        elif fault is not None:
            return self._answer(fault_response(fault, xml=True))
        if service == "echo":
            return self._answer(self._echo(origin, path))
        account = path.lstrip("/").split("/", 1)[0]
        if not account or not hub.state.has_account(account):
            return self._answer(storage_error(400, "InvalidUri", "The requested URI does not represent any "
                                              "resource on the server."))
        if not hub.state.network_allows(account, origin.ip, private_endpoint=origin.private_endpoint) \
                and not self._trusted_service(hub, account, authorization):
            return self._answer(storage_error(403, "AuthorizationFailure", FIREWALL_MESSAGE))
        denial = auth_denial(hub, account, self.command, authorization, query)
        if denial is not None:
            return self._answer(denial)
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return self._forward()  # shared key, SAS or anonymous: Azurite checks it
        if self.command == "POST" and query.get("comp") == "userdelegationkey":
            version = self.headers.get("x-ms-version") or "2025-11-05"
            return self._answer(user_delegation_key(hub.secret, decode_token(credential.strip()),
                                                    self._read_body(MAX_KEY_INFO), version))
        return self._forward(resign=(account, hub.account_key(account)))

    @staticmethod
    def _trusted_service(hub: Hub, account: str, authorization: str) -> bool:
        """``bypass: AzureServices`` for a trusted service's managed identity (``storage.trusted``)."""
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        refusal, claims = token_refusal(hub, account, credential.strip())
        return refusal is None and bypass_admits(hub, account, claims)

    @staticmethod
    def _echo(origin: Origin, path: str) -> Response:
        if origin.private_endpoint:
            return Response(404, b"no public IP behind the private endpoint", {"Content-Type": "text/plain"})
        if path == "/_echo/ip":
            return Response(200, origin.ip.encode(), {"Content-Type": "text/plain"})
        if path == "/_echo/checkip":
            return Response(200, (origin.ip + "\n").encode(), {"Content-Type": "text/plain;charset=UTF-8"})
        if path == "/_echo/json":
            return Response(200, json.dumps({"ip": origin.ip}).encode(), {"Content-Type": "application/json"})
        return Response(404, b"unknown echo service", {"Content-Type": "text/plain"})

    def _read_body(self, limit: int) -> bytes:
        """The request body (a small one: at most ``limit`` bytes are kept, the rest is read and dropped)."""
        self._body_read = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            pieces = b""
            for piece in iter_chunked(self.rfile):
                pieces = (pieces + piece)[:limit + 1]
            return pieces
        remaining = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(min(remaining, limit + 1)) if remaining else b""
        remaining -= len(data)
        while remaining > 0:
            dropped = self.rfile.read(min(65536, remaining))
            if not dropped:
                break
            remaining -= len(dropped)
        return data

    def _drain(self) -> None:
        """Read the request body we will not forward, so the client sees our answer and not a reset."""
        if self._body_read:
            return
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            for _ in iter_chunked(self.rfile):
                pass
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(65536, remaining))
            if not data:
                break
            remaining -= len(data)

    def _answer(self, response: Response) -> int:
        self._drain()
        self.send_response(response.status)
        headers = {"x-ms-version": self.headers.get("x-ms-version") or "2025-11-05", **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        return response.status

    # -- proxying -------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPSConnection:
        if self._upstream is not None and time.monotonic() - self._upstream_used > UPSTREAM_IDLE:
            self._close_upstream()
        if self._upstream is None:
            port: int = self.server.upstream_port  # type: ignore[attr-defined]
            context: ssl.SSLContext = self.server.upstream_context  # type: ignore[attr-defined]
            self._upstream = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=300)
            self._upstream.connect()
            if self._upstream.sock is not None:
                self._upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._upstream

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _forward(self, resign: tuple[str, str] | None = None) -> int:
        """Stream the request to Azurite; ``resign`` (account, key): signed with that key instead of the caller's
        token, which Azurite would refuse."""
        port: int = self.server.upstream_port  # type: ignore[attr-defined]
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        # A host-style request keeps its host and path: Azurite reads the account from the host (its
        # "production-style URL") and checks the SharedKey signature the client computed for that form.
        host = self._host_style or f"127.0.0.1:{port}"
        headers = [(name, value) for name, value in self.headers.items()
                   if name.lower() not in HOP_BY_HOP and name.lower() not in ("host", "expect")]
        if resign is not None:
            headers = resigned_headers(*resign, self.command, f"https://{host}{self._upstream_path}", headers)
        try:
            conn = self._connection()
            conn.putrequest(self.command, self._upstream_path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for name, value in headers:
                conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            self._send_body(conn, chunked)
            upstream = conn.getresponse()
        except (OSError, http.client.HTTPException):
            log.warning("Azurite did not answer %s %s", self.command, self.path, exc_info=True)
            self._close_upstream()
            self.close_connection = True
            return self._answer(storage_error(503, "ServerBusy", "The blob service (Azurite) is unavailable."))
        return self._relay(upstream)

    def _send_body(self, conn: http.client.HTTPSConnection, chunked: bool) -> None:
        if chunked:
            for piece in iter_chunked(self.rfile):
                if piece:
                    conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(65536, remaining))
            if not data:
                break
            conn.send(data)
            remaining -= len(data)

    def _relay(self, upstream: http.client.HTTPResponse) -> int:
        self.send_response_only(upstream.status, upstream.reason)
        no_body = self.command == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        rechunk = not no_body and upstream.getheader("Content-Length") is None
        for name, value in upstream.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while not no_body:
                data = upstream.read(65536)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if rechunk else data)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
            upstream.read()  # leave the connection clean for reuse
        finally:
            self._upstream_used = time.monotonic()
            if upstream.will_close:
                self._close_upstream()
        return upstream.status
