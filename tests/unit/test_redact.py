"""Secrets never reach a log: tokens, SAS signatures and account keys are masked."""

from __future__ import annotations

import logging

import pytest

from cicd_tools.sandbox.identity.identity import mint_token, signing_key
from cicd_tools.support.redact import RedactingFilter, redact

SAS_URL = "https://acct.blob.core.windows.net/c/b?sv=2023-11-03&se=2026-01-01&sp=rw&sig=AbC%2Bdef123%3D"
CONN = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5==;EndpointSuffix=x"


def test_sas_signature_is_masked_but_the_url_stays_readable() -> None:
    masked = redact(SAS_URL)
    assert "AbC%2Bdef123" not in masked
    assert masked.endswith("sp=rw&sig=***") and "acct.blob.core.windows.net" in masked


def test_account_key_and_bearer_token_are_masked() -> None:
    token = mint_token("ci", "https://storage.azure.com", key=signing_key("unit-test-sandbox-secret"))
    text = redact(f"{CONN} Authorization: Bearer {token} raw={token}")
    assert "c2VjcmV0a2V5" not in text and token not in text
    assert "AccountKey=***" in text and "Bearer ***" in text


def test_logging_filter_masks_formatted_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("cicd_tools.test_redact")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="cicd_tools.test_redact"):
            logger.info("uploading to %s with %s", SAS_URL, CONN)
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "AbC%2Bdef123" not in caplog.text and "c2VjcmV0a2V5" not in caplog.text


def test_cli_error_messages_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from cicd_tools.cli.console import report_error
    from cicd_tools.support.errors import AzureError

    report_error(AzureError(f"upload to {SAS_URL} failed", hint=f"check {CONN}"), None)
    err = capsys.readouterr().err
    assert "AbC%2Bdef123" not in err and "c2VjcmV0a2V5" not in err


def test_the_sandbox_secret_is_masked_as_exported_as_json_and_as_a_header() -> None:
    from cicd_tools.sandbox.identity.identity import new_secret

    secret = new_secret()
    text = redact(f"export CICD_SANDBOX_SECRET={secret}\n{{\"CICD_SANDBOX_SECRET\": \"{secret}\"}}\n"
                  f"X-Cicd-Sandbox-Secret: {secret}")
    assert secret not in text
    assert text.count("***") == 3 and "CICD_SANDBOX_SECRET=***" in text


def test_a_control_client_registers_its_secret_so_errors_never_show_it() -> None:
    from cicd_tools.sandbox.control_client import ControlClient
    from cicd_tools.sandbox.identity.identity import new_secret

    secret = new_secret()
    ControlClient("https://127.0.0.1:9/_sandbox", "/nonexistent-ca.pem", secret=secret).close()
    assert redact(f"control failed with {secret} in the text") == "control failed with *** in the text"
