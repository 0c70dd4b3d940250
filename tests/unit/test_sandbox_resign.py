"""The blob front's re-signing (sandbox/storage/resign.py): the signature azure-storage-blob itself computes, and
user delegation keys derived as Azurite derives them (src/blob/utils/utils.ts ``getUserDelegationKeyValue``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from xml.etree import ElementTree

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from cicd_tools.sandbox.storage.azurite import random_key
from cicd_tools.sandbox.storage.resign import delegation_key, resigned_headers, user_delegation_key

URL = "https://127.0.0.1:10000/acct/container/a%20b.json?comp=metadata&timeout=30"
HEADERS = [("x-ms-version", "2025-11-05"), ("x-ms-date", "Tue, 08 Dec 2026 01:00:00 GMT"), ("Content-Length", "2"),
           ("x-ms-meta-Kind", "probe"), ("If-Match", '"0x1"'), ("Content-Type", "application/json")]


def sdk_authorization(key: str, headers: list[tuple[str, str]]) -> str:
    request = HttpRequest("PUT", URL, headers=dict(headers))
    SharedKeyCredentialPolicy("acct", key).on_request(PipelineRequest(request, PipelineContext(None)))  # type: ignore[no-untyped-call]
    return str(request.headers["Authorization"])


def test_the_signature_is_the_one_azure_storage_blob_computes_with_the_key() -> None:
    key = random_key()
    signed = resigned_headers("acct", key, "PUT", URL, [*HEADERS, ("Authorization", "Bearer eyJ.x.y")])
    authorizations = [value for name, value in signed if name.lower() == "authorization"]
    assert authorizations == [sdk_authorization(key, HEADERS)]
    assert ("x-ms-meta-Kind", "probe") in signed  # forwarded as the caller wrote it


def test_a_request_without_a_date_gets_x_ms_date_before_it_is_signed() -> None:
    key = random_key()
    undated = [h for h in HEADERS if h[0] != "x-ms-date"]
    signed = resigned_headers("acct", key, "PUT", URL, undated)
    dates = [value for name, value in signed if name == "x-ms-date"]
    assert len(dates) == 1 and dates[0].endswith(" GMT")
    authorization = next(value for name, value in signed if name == "Authorization")
    assert authorization == sdk_authorization(key, [*undated, ("x-ms-date", dates[0])])


def _fields(body: bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ElementTree.fromstring(body)}


def test_a_user_delegation_key_is_azurites_derivation_with_the_sandboxs_key() -> None:
    claims = {"oid": "11111111-2222-3333-4444-555555555555", "tid": "72f988bf-0000-4000-8000-00000000cafe"}
    body = b"<KeyInfo><Start>2026-12-08T01:00:00.123Z</Start><Expiry>2026-12-08T02:00:00Z</Expiry></KeyInfo>"
    answer = user_delegation_key("the secret", claims, body, "2025-11-05")
    assert answer.status == 200
    fields = _fields(answer.body)
    assert (fields["SignedStart"], fields["SignedExpiry"]) == ("2026-12-08T01:00:00Z", "2026-12-08T02:00:00Z")
    signed = "\n".join((claims["oid"], claims["tid"], "2026-12-08T01:00:00Z", "2026-12-08T02:00:00Z", "b",
                        "2025-11-05"))
    expected = hmac.new(delegation_key("the secret").encode(), signed.encode(), hashlib.sha256).digest()
    assert fields["Value"] == base64.b64encode(expected).decode()
    assert delegation_key("the secret") != delegation_key("another secret")


def test_a_key_info_without_expiry_or_not_xml_is_a_400() -> None:
    for body in (b"<KeyInfo><Start>2026-12-08T01:00:00Z</Start></KeyInfo>", b"not xml"):
        answer = user_delegation_key("s", {"oid": "o", "tid": "t"}, body, "2025-11-05")
        assert answer.status == 400 and answer.headers["x-ms-error-code"] == "InvalidXmlDocument"
