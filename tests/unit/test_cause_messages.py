"""Issue 20 case 4: messages that name the real cause and a command that fixes it, at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.client import ArmCalls
from cicd_tools.cli.main import main
from cicd_tools.support.errors import AzureError
from cicd_tools.support.tls import is_certificate_failure

SANDBOX_FIX = 'eval "$(cicd-tools sandbox env)"'


@pytest.fixture
def sandbox_shell_without_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What `eval "$(cicd-tools sandbox env)"` exports, minus REQUESTS_CA_BUNDLE (a new terminal, a sub-shell)."""
    for name, value in {"CICD_SANDBOX_STATE_DIR": str(tmp_path), "CICD_SUBSCRIPTION_ID": "s",
                        "CICD_RESOURCE_GROUP": "rg", "CICD_FACTORY": "adf", "CICD_STORAGE_ACCOUNT": "acct",
                        "CICD_ARM_ENDPOINT": "https://127.0.0.1:9",
                        "CICD_BLOB_ENDPOINT": "https://127.0.0.1:9/acct"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)


@pytest.mark.parametrize("argv", [["adf", "run", "--pipeline", "p"], ["storage", "smoke"],
                                  ["pointer", "read", "--asset", "training-code"]])
def test_a_sandbox_shell_without_its_ca_bundle_is_told_to_re_run_sandbox_env(
    sandbox_shell_without_ca: None, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["-o", "json", *argv]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["code"] == "SandboxCaNotTrusted" and "REQUESTS_CA_BUNDLE" in doc["message"]
    assert SANDBOX_FIX in doc["hint"] and "network" not in doc["hint"]


class ServiceRequestError(Exception):
    """azure-core's class name for a request that never got an answer (here: the TLS handshake failed)."""


def test_a_certificate_failure_is_not_retried_and_says_which_bundle_is_missing(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_SANDBOX_STATE_DIR", "/tmp/sandbox")
    slept: list[float] = []
    calls = ArmCalls(sleep=slept.append)
    error = ServiceRequestError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
    assert is_certificate_failure(error)

    def fail() -> Any:
        raise error

    with pytest.raises(AzureError) as info:
        calls("createRun p", fail)
    assert calls.calls == 1 and slept == []  # one attempt: a retry cannot make the certificate trusted
    assert info.value.code == "CertificateVerifyFailed" and SANDBOX_FIX in str(info.value.hint)


def test_timeout_zero_says_it_must_be_positive_not_that_it_is_no_duration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CICD_SUBSCRIPTION_ID", "CICD_RESOURCE_GROUP", "CICD_STORAGE_ACCOUNT"):
        monkeypatch.setenv(name, "x")
    assert main(["-o", "json", "firewall", "open", "--timeout", "0"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert "--timeout '0' is zero" in doc["message"] and "not a duration" not in doc["message"]
    assert "positive" in doc["hint"] and "Use seconds" not in doc["hint"]


@pytest.mark.parametrize("content", ['{"name": "not a report"}', "[1, 2]"])
def test_report_show_of_a_json_file_that_is_no_report_says_so_not_schema_version_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "package.json"
    path.write_text(content)
    assert main(["-o", "json", "report", "show", str(path)]) == 5
    doc = json.loads(capsys.readouterr().out)
    assert "is not an evidence report" in doc["message"] and "None" not in doc["message"]
    assert doc["code"] == "ReportMalformed" and "version that wrote" not in doc["hint"]
