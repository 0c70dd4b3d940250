"""How the local runner's WebActivity reaches the network: identity, network origin, HTTP.

Three small protocols keep it pluggable:

* ``TokenProvider.get_token(resource)``: the managed identity; the runner adds ``Authorization: Bearer``.
* ``NetworkOrigins.origin_for(runtime)``: which network a call leaves from. ``runtime`` is the integration
  runtime named by ``typeProperties.connectVia`` (``None``: the factory's AutoResolveIntegrationRuntime, which
  the network resolves from the factory's runtimes: a public Azure IR, or one in the managed virtual network).
  A root-level ``connectVia`` never reaches this: ADF ignores it, so does the runner. An ``Origin`` shapes the request
  (extra headers, proxies, a ``requests.Session``) and may ``resolve`` its URL the way that network's DNS
  would: the sandbox's Data Factory maps ``{account}.blob.core.windows.net`` to the blob front's port of the
  network the call leaves from (the managed private endpoint, or the factory's public IP).
* ``WebCaller.call(request)``: performs one ``WebRequest``; ``RequestsWebCaller`` is the real one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

log = logging.getLogger(__name__)

DEFAULT_RUNTIME = "AutoResolveIntegrationRuntime"
# "The maximum supported output response payload size is 4 MB."
# https://learn.microsoft.com/en-us/azure/data-factory/control-flow-web-activity (Note). The body is read in
# chunks and the call fails past the cap: a 1 GB answer never sits in memory.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_CHUNK = 64 * 1024


class TokenProvider(Protocol):
    """A managed identity: an access token (no "Bearer " prefix) for a resource / audience."""

    def get_token(self, resource: str) -> str: ...


@dataclass(frozen=True)
class Origin:
    """Where a request leaves from and how that shapes it."""

    name: str  # shown as the activity's effectiveIntegrationRuntime, "{name} ({region})"
    headers: Mapping[str, str] = field(default_factory=dict)
    proxies: Mapping[str, str] = field(default_factory=dict)
    session: requests.Session | None = None  # e.g. bound to a source address; None: the caller's session
    region: str = "Local"
    # DNS for this network: the URL to actually send to; raises LookupError for a name that does not resolve.
    resolve: Callable[[str], str] | None = None
    ca_bundle: str | None = None  # the CA to verify TLS with (None: requests' default)


class NetworkOrigins(Protocol):
    """Maps an integration runtime reference (None: the factory's AutoResolveIntegrationRuntime) to an ``Origin``.

    Raises: LookupError for a runtime it does not know (the activity then fails, as in ADF).
    """

    def origin_for(self, runtime: str | None) -> Origin: ...


class DirectOrigins:
    """Every runtime leaves from this machine (what ``adf run-local`` does by default).

    ``hosts`` maps host names to base URLs, like a hosts file: ``{"acct.blob.core.windows.net":
    "https://127.0.0.1:10000/acct"}`` sends ``https://acct.blob.core.windows.net/c/b`` to
    ``https://127.0.0.1:10000/acct/c/b`` (how ``run-local`` reaches the sandbox with a factory's real host names).
    """

    def __init__(self, hosts: Mapping[str, str] | None = None) -> None:
        self.hosts = {k.lower(): v.rstrip("/") for k, v in (hosts or {}).items()}

    def origin_for(self, runtime: str | None) -> Origin:
        return Origin(name=runtime or DEFAULT_RUNTIME, resolve=self.resolve if self.hosts else None)

    def resolve(self, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        base = self.hosts.get((parts.hostname or "").lower())
        if base is None:
            return url
        return base + parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class WebRequest:
    """One evaluated WebActivity call."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    msi_resource: str | None = None  # managed identity audience; None: no Authorization added
    runtime: str | None = None  # typeProperties.connectVia.referenceName
    timeout: float = 60.0  # seconds to wait for the response (httpRequestTimeout)
    verify: bool = True  # False with disableCertValidation


@dataclass(frozen=True)
class WebResponse:
    """The answer: status, headers, body text, and the runtime that carried it."""

    status: int
    headers: Mapping[str, str]
    text: str
    reason: str = ""
    effective_runtime: str = DEFAULT_RUNTIME


class WebCaller(Protocol):
    """Performs WebActivity calls. Raises: WebCallError when no response came back."""

    def call(self, request: WebRequest) -> WebResponse: ...


class WebCallError(Exception):
    """No HTTP response: timeout, refused connection, TLS failure, unknown runtime, token failure."""


class RequestsWebCaller:
    """The real WebCaller: ``requests`` + a token provider + network origins."""

    def __init__(
        self,
        *,
        tokens: TokenProvider | None = None,
        origins: NetworkOrigins | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.tokens = tokens
        self.origins: NetworkOrigins = origins or DirectOrigins()
        self.session = session or requests.Session()

    def close(self) -> None:
        """Close the default session (origins' own sessions belong to the origins)."""
        self.session.close()

    def call(self, request: WebRequest) -> WebResponse:
        try:
            origin = self.origins.origin_for(request.runtime)
        except LookupError as err:
            raise WebCallError(str(err)) from None
        headers = {**dict(request.headers), **dict(origin.headers)}
        if request.msi_resource is not None:
            if self.tokens is None:
                raise WebCallError("the activity uses managed identity but the runner has no token provider")
            try:
                token = self.tokens.get_token(request.msi_resource)
            except Exception as err:  # any identity failure fails the activity, as a token error does in ADF
                raise WebCallError(f"could not get a token for resource '{request.msi_resource}': {err}") from None
            headers["Authorization"] = f"Bearer {token}"
        session = origin.session or self.session
        url = request.url
        if origin.resolve is not None:
            try:
                url = origin.resolve(request.url)
            except LookupError as err:
                raise WebCallError(str(err)) from None
        log.debug("%s %s via %s", request.method, request.url, origin.name)
        verify: bool | str = request.verify
        if request.verify and origin.ca_bundle:
            verify = origin.ca_bundle
        try:
            response = session.request(
                request.method,
                url,
                headers=headers,
                data=request.body,
                timeout=request.timeout,
                verify=verify,
                proxies=dict(origin.proxies) or None,
                allow_redirects=True,
                stream=True,
            )
            with response:
                body = _read_capped(response)
        except requests.Timeout:
            raise WebCallError(f"the request timed out after {request.timeout:g} seconds") from None
        except requests.RequestException as err:
            raise WebCallError(f"{type(err).__name__}: {err}") from None
        # No BOM sniffing: the bytes are decoded as declared (JSON: UTF-8), so a BOM stays visible.
        text = body.decode(response.encoding or "utf-8", errors="replace")
        return WebResponse(
            status=response.status_code,
            headers=dict(response.headers),
            text=text,
            reason=response.reason or "",
            effective_runtime=f"{origin.name} ({origin.region})",
        )


def _read_capped(response: requests.Response) -> bytes:
    """The body, or WebCallError once it passes ``MAX_RESPONSE_BYTES`` (the rest is never read)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise WebCallError(_too_large(int(declared)))
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise WebCallError(_too_large(None))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(declared: int | None) -> str:
    size = f" ({declared} bytes)" if declared is not None else ""
    return (f"the response payload{size} exceeds the maximum supported output response payload size of 4 MB"
            f" ({MAX_RESPONSE_BYTES} bytes)")


def parse_headers(value: Any) -> dict[str, str]:
    """WebActivity headers as a dict (ADF takes an object; old pipelines may hold a JSON string)."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if isinstance(value, Mapping):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):  # the newer designer stores [{"name": .., "value": ..}]
        return {str(h["name"]): str(h.get("value", "")) for h in value if isinstance(h, Mapping) and "name" in h}
    return {}
