"""The sandbox's az stand-in outside a sandbox: what it refuses, in the Azure CLI's words (ERROR: …, exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.sandbox.identity import azcli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = azcli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_without_a_login_it_asks_for_az_login_as_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    code, out, err = run(capsys, "account", "get-access-token", "--resource", "https://storage.azure.com")
    # AzureCliCredential turns exactly this into CredentialUnavailableError ("az login" in stderr, no AADSTS).
    assert (code, out, err) == (1, "", "ERROR: Please run 'az login' to setup account.\n")


def test_a_profile_without_subscriptions_is_not_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "azureProfile.json").write_text(json.dumps({"subscriptions": []}), encoding="utf-8-sig")
    (tmp_path / "cicd-sandbox-login.json").write_text("{}")
    assert run(capsys, "account", "show")[0] == 1


def test_resource_and_scope_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "account", "get-access-token", "--resource", "https://a", "--scope", "https://a/.default")
    assert code == 1 and err == "ERROR: usage error: --resource/--resource-type/--scope\n"


def test_commands_it_does_not_know_are_refused_naming_the_ones_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "group", "list")
    assert code == 1 and err.startswith("ERROR: ")
    assert "az account get-access-token" in err and "az account show" in err
