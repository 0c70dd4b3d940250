"""Related settings resolved together: an account and a blob endpoint from two sources must name one account."""

from __future__ import annotations

import json

import pytest

from cicd_tools.cli.main import main
from cicd_tools.settings.resolve import Settings, endpoint_account
from cicd_tools.support.errors import ConfigError


@pytest.mark.parametrize(("url", "account"), [
    ("https://mlopsprod.blob.core.windows.net", "mlopsprod"),  # public cloud, virtual-hosted style
    ("https://mlopsprod.privatelink.blob.core.windows.net/", "mlopsprod"),
    ("https://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),  # Azurite's path style
    ("https://storage.example.com", None),  # a custom domain names no account
])
def test_endpoint_account_reads_both_url_styles(url: str, account: str | None) -> None:
    assert endpoint_account(url) == account


def test_an_endpoint_naming_another_account_is_refused_naming_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CICD_BLOB_ENDPOINT", "https://127.0.0.1:1/mlopssandboxsa")
    settings = Settings.from_env(storage_account="mlopssandbox")
    with pytest.raises(ConfigError) as info:
        settings.account_url()
    assert "CICD_BLOB_ENDPOINT" in info.value.message and "--account" in info.value.message
    assert "'mlopssandboxsa'" in info.value.message and "'mlopssandbox'" in info.value.message


def test_matching_account_and_endpoint_are_used_as_given() -> None:
    settings = Settings(storage_account="MlopsSandboxSA", blob_endpoint="https://127.0.0.1:1/mlopssandboxsa")
    assert settings.account_url() == "https://127.0.0.1:1/mlopssandboxsa"


def test_storage_smoke_with_a_mistyped_account_exits_2_before_any_call(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The seams issue's case: CICD_BLOB_ENDPOINT (as `sandbox env` and CI variable groups set it) must not
    # silently beat an explicit --account. Port 1 on loopback: any call that were made would fail differently.
    monkeypatch.setenv("CICD_BLOB_ENDPOINT", "https://127.0.0.1:1/mlopssandboxsa")
    code = main(["-o", "json", "storage", "smoke", "--account", "mlopssandbox"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    assert "mlopssandboxsa" in doc["message"] and "--account" in doc["message"]
