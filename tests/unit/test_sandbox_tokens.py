"""The sandbox's tokens: HS256 with a per-sandbox key (RFC 7515 / 7519); only what it signed, while valid, passes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from cicd_tools.sandbox.identity.identity import (
    SandboxCredential,
    TokenError,
    decode_token,
    mint_token,
    new_secret,
    signing_key,
    verify_signature,
    verify_token,
)

KEY = signing_key("unit-test-sandbox-secret")
ARM = "https://127.0.0.1:4443"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_minted_token_is_a_standard_hs256_jws_over_header_and_payload() -> None:
    token = mint_token("ci-pipeline", ARM, key=KEY)
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    # RFC 7515 §5.1: the signature is HMAC-SHA256 over ASCII(header "." payload).
    expected = hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert signature == _b64(expected)
    assert verify_token(token, KEY)["name"] == "ci-pipeline"


@pytest.mark.parametrize("alg", ["none", "None", "HS512", "RS256"])
def test_any_other_algorithm_is_refused_even_with_valid_claims(alg: str) -> None:
    claims = decode_token(mint_token("ci-pipeline", ARM, key=KEY))
    forged = f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."
    with pytest.raises(TokenError) as info:
        verify_token(forged, KEY)
    assert info.value.reason == "signature"


def test_a_changed_payload_another_key_and_garbage_are_refused() -> None:
    token = mint_token("ci-pipeline", ARM, key=KEY)
    header, _, signature = token.split(".")
    owner = _b64(json.dumps({**decode_token(token), "name": "Owner"}).encode())
    cases = {"tampered": f"{header}.{owner}.{signature}",
             "other key": mint_token("ci-pipeline", ARM, key=signing_key(new_secret())),
             "two parts": "a.b", "not base64": "@@.@@.@@"}
    for bad in cases.values():
        with pytest.raises(TokenError):
            verify_token(bad, KEY)


def test_expired_and_not_yet_valid_tokens_are_refused_with_their_reason() -> None:
    with pytest.raises(TokenError) as expired:
        verify_token(mint_token("ci-pipeline", ARM, key=KEY, lifetime=-1), KEY)
    assert expired.value.reason == "expired"
    with pytest.raises(TokenError) as early:
        verify_token(mint_token("ci-pipeline", ARM, key=KEY, now=10_000), KEY, now=0)
    assert early.value.reason == "not-yet-valid"
    assert verify_signature(mint_token("ci-pipeline", ARM, key=KEY, lifetime=-1), KEY)["aud"] == ARM


def test_the_signing_key_is_not_the_secret_and_differs_per_sandbox() -> None:
    first, second = new_secret(), new_secret()
    assert first != second and signing_key(first) != signing_key(second)
    assert first.encode() not in signing_key(first) and len(signing_key(first)) == 32


def test_the_credential_signs_with_the_secret_it_is_given_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    token = SandboxCredential("adf-factory", secret=secret).get_token(ARM + "/.default").token
    assert verify_token(token, signing_key(secret))["aud"] == ARM
    monkeypatch.setenv("CICD_SANDBOX_SECRET", secret)
    assert verify_token(SandboxCredential().get_token(ARM + "/.default").token, signing_key(secret))
    monkeypatch.delenv("CICD_SANDBOX_SECRET")
    with pytest.raises(TokenError):  # neither: a throwaway key no sandbox accepts
        verify_token(SandboxCredential().get_token(ARM + "/.default").token, signing_key(secret))
