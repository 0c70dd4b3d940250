"""What the blob front adds for a caller it admitted with a token: Azurite takes no tokens (``storage.azurite``).

- ``resigned_headers``: the forwarded request signed with the account's key (SharedKey), so Azurite checks a
  secret of the sandbox and not a token it cannot verify. The string to sign is azure-storage-blob's own
  (``SharedKeyCredentialPolicy``: its canonical headers, resource and query), with the ``Range`` header in its
  documented place (authorize-with-shared-key; the SDK never sends ``Range``, it signs an empty line there, and
  Azurite signs ``Range`` as documented).
- ``user_delegation_key``: Get User Delegation Key answered by the front, as Azurite answers it only to a bearer
  token. The key is Azurite's derivation (HMAC-SHA256 over oid, tid, start, expiry, ``b``, version) with the
  sandbox's ``delegation_key`` in place of the constant Azurite publishes, which the sandbox's Azurite uses too, so
  a user delegation SAS made from it is checked by Azurite as usual.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob._shared import authentication

from cicd_tools.sandbox.server import Response, storage_error

SIGNED_HEADERS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
                  "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
MAX_KEY_INFO = 64 * 1024  # a KeyInfo body is a few hundred bytes
SAS_TIME = "%Y-%m-%dT%H:%M:%SZ"  # how azure-storage-blob writes skt/ske (``_to_utc_datetime``)
_SDK: Any = authentication  # azure-storage-blob's SharedKey code (not annotated)


def delegation_key(secret: str) -> str:
    """The key the sandbox's user delegation keys derive from (new with each sandbox, like its account keys)."""
    return base64.b64encode(hmac.new(secret.encode(), b"cicd-tools-sandbox:user-delegation-key",
                                     hashlib.sha512).digest()).decode()


def _string_to_sign(account: str, key: str, request: PipelineRequest[HttpRequest]) -> str:
    policy = _SDK.SharedKeyCredentialPolicy(account, key)
    return str(policy._get_verb(request) + policy._get_headers(request, list(SIGNED_HEADERS))
               + policy._get_canonicalized_headers(request) + policy._get_canonicalized_resource(request)
               + policy._get_canonicalized_resource_query(request))


def resigned_headers(
    account: str, key: str, method: str, url: str, headers: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``headers`` without the caller's ``Authorization``, with ``x-ms-date`` (when missing) and a SharedKey
    ``Authorization`` for ``method`` on ``url`` (the URL exactly as Azurite receives it)."""
    kept = [(name, value) for name, value in headers if name.lower() != "authorization"]
    if not any(name.lower() in ("x-ms-date", "date") for name, _ in kept):
        kept.append(("x-ms-date", formatdate(usegmt=True)))
    # Signed under lower-case names (Azurite, like Azure, reads them so); forwarded as the caller wrote them
    # (metadata names keep their case).
    request = HttpRequest(method, url, headers={name.lower(): value for name, value in kept})
    pipeline_request: PipelineRequest[HttpRequest] = PipelineRequest(request, PipelineContext(None))
    signature = str(_SDK.sign_string(key, _string_to_sign(account, key, pipeline_request)))
    return [*kept, ("Authorization", f"SharedKey {account}:{signature}")]


def _key_info_time(root: ElementTree.Element, name: str, default: dt.datetime | None) -> str:
    text = (root.findtext(name) or "").strip()
    if not text:
        if default is None:
            raise ValueError(f"{name} is missing")
        return default.strftime(SAS_TIME)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime(SAS_TIME)


def user_delegation_key(secret: str, claims: Mapping[str, Any], body: bytes, version: str) -> Response:
    """Get User Delegation Key for the (verified) token ``claims``: 200 with the key, or 400 for a bad KeyInfo."""
    try:
        root = ElementTree.fromstring(body)
        start = _key_info_time(root, "Start", dt.datetime.now(dt.UTC))
        expiry = _key_info_time(root, "Expiry", None)
    except (ElementTree.ParseError, ValueError):
        return storage_error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
    oid, tid = str(claims.get("oid", "")), str(claims.get("tid", ""))
    signed = "\n".join((oid, tid, start, expiry, "b", version))
    value = base64.b64encode(hmac.new(delegation_key(secret).encode(), signed.encode(),
                                      hashlib.sha256).digest()).decode()
    fields = {"SignedOid": oid, "SignedTid": tid, "SignedStart": start, "SignedExpiry": expiry,
              "SignedService": "b", "SignedVersion": version, "Value": value}
    xml = "".join(f"<{name}>{escape(text)}</{name}>" for name, text in fields.items())
    payload = f'<?xml version="1.0" encoding="utf-8"?><UserDelegationKey>{xml}</UserDelegationKey>'.encode()
    return Response(200, payload, {"Content-Type": "application/xml"})
