"""Classify Azure SDK exceptions into the toolkit's error tree, naming Azure's error code.

The storage SDK raises a plain ``HttpResponseError`` for both 403 codes, so we branch on
``error_code`` (AZURE_FACTS.md §3), never on the exception class alone.
"""

from __future__ import annotations

import re

from cicd_tools.support.errors import (
    AuthenticationFailed,
    AzureError,
    CicdError,
    NetworkDenied,
    PermissionMissing,
    Throttled,
    TimeoutExpired,
)

NETWORK_CODES = frozenset({"AuthorizationFailure"})
RBAC_CODES = frozenset({"AuthorizationPermissionMismatch"})
AUTH_CODES = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo", "InvalidAuthenticationToken"})


DNS_MARKERS = (
    "name or service not known",
    "getaddrinfo",
    "nodename nor servname",
    "failed to resolve",
    "temporary failure in name resolution",
    "nameresolutionerror",
    "no address associated",
)


def is_dns_failure(exc: BaseException) -> bool:
    """True for a request that failed because its host name did not resolve (a retry will not make it resolve:
    a mistyped account, or a private endpoint without its DNS zone)."""
    text = str(exc).lower()
    return type(exc).__name__ == "ServiceRequestError" and any(m in text for m in DNS_MARKERS)


def error_code_of(exc: BaseException) -> str | None:
    """Azure's error code carried by an SDK exception, if any."""
    # azure-storage-blob may set a ``StorageErrorCode`` enum: str() of it is "StorageErrorCode.X" on 3.11.
    for code in (getattr(exc, "error_code", None), getattr(getattr(exc, "error", None), "code", None)):
        if code:
            return str(getattr(code, "value", code))
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        header = headers.get("x-ms-error-code")
        if header:
            return str(header)
    return None


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def classify_azure_error(exc: BaseException, *, what: str = "the Azure call") -> CicdError:
    """Turn an azure-core / azure-identity exception into a CicdError with a fix."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )

    code = error_code_of(exc)
    status = status_of(exc)
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if code in NETWORK_CODES:
        return NetworkDenied(
            f"{what} was refused by the storage firewall (403 {code}): the request's source IP is not allowed,"
            " or a new rule has not propagated yet.",
            code=code,
        )
    if code in RBAC_CODES:
        return PermissionMissing(
            f"{what} was refused (403 {code}): the identity is authenticated but lacks a data role.",
            code=code,
        )
    if code in AUTH_CODES or (
        isinstance(exc, ClientAuthenticationError) and code not in NETWORK_CODES | RBAC_CODES
    ):
        return AuthenticationFailed(f"{what} could not authenticate: {summarize_auth_failure(str(exc))}",
                                    code=code or "AuthenticationFailed")
    if status == 429 or (status is not None and status >= 500):
        return Throttled(f"{what} kept failing with HTTP {status}: {first_line}", code=code or str(status))
    if isinstance(exc, ServiceResponseTimeoutError):
        return TimeoutExpired(f"{what} timed out: {first_line}", code="Timeout")
    if isinstance(exc, ServiceRequestError):
        text = str(exc).lower()
        if any(m in text for m in DNS_MARKERS):
            return AzureError(
                f"{what} failed: the host name did not resolve ({first_line}).",
                hint="Check the account name (--account / CICD_STORAGE_ACCOUNT) or --blob-endpoint; a private"
                     " endpoint without a private DNS zone link fails like this too: check DNS from the agent.",
                code="DnsResolutionFailed",
            )
        return AzureError(
            f"{what} could not connect: {first_line}",
            hint="With public network access disabled or no route, connections time out or are refused.",
            code="ConnectionFailed",
        )
    if isinstance(exc, ServiceResponseError):
        return AzureError(f"{what}: the connection dropped ({first_line}).", code="ConnectionDropped")
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return AzureError(f"{what}: not found ({code or 404}): {first_line}", code=code or "NotFound",
                          hint="Check the account, container or resource names.")
    return AzureError(f"{what} failed ({code or status or type(exc).__name__}): {first_line}", code=code)


_TRIED = re.compile(r"^\t(?P<name>\w+Credential): (?P<why>.*)$")


def _first_sentence(text: str, name: str) -> str:
    text = text.replace(f"{name} authentication unavailable.", "unavailable.").replace(f"{name} ", "").strip()
    sentence = re.split(r"(?<=[.!])\s", text, maxsplit=1)[0].rstrip(".")
    return sentence if len(sentence) <= 90 else sentence[:87] + "..."


def summarize_auth_failure(text: str) -> str:
    """azure-identity's failure text in at most two lines: what failed, then what each credential tried said.

    A chained credential (DefaultAzureCredential) lists every credential it tried over a dozen lines with a link
    each; a CI log needs the verdict and one short reason per credential.
    """
    lines = text.strip().splitlines() or ["authentication failed"]
    tried = [f"{m['name']} ({_first_sentence(m['why'], m['name'])})" for m in map(_TRIED.match, lines) if m]
    if not tried:
        return lines[0][:300]
    return f"{lines[0]}\n  tried: {'; '.join(tried)}"

