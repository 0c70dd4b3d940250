"""Which credential the toolkit builds, and why: explicit choices, auto-detection from the runner's variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    AzureCliCredential,
    AzurePipelinesCredential,
    ClientAssertionCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from cicd_tools import credentials
from cicd_tools.cli.main import build_parser, main
from cicd_tools.credentials import build_credential, describe_credential, github_id_token, selected_mode
from cicd_tools.support.errors import ConfigError

ADO = {  # what AzureCLI@2 with a workload-identity service connection plus a mapped System.AccessToken gives
    "AZURESUBSCRIPTION_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
    "AZURESUBSCRIPTION_TENANT_ID": "22222222-2222-4222-8222-222222222222",
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "33333333-3333-4333-8333-333333333333",
    "SYSTEM_ACCESSTOKEN": "job-token",
    "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/contoso/p/_apis/distributedtask/hubs/build/plans/x/jobs/y/oidctoken",
}


@pytest.fixture
def no_az(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has no az and whose home has no az profile."""
    (tmp_path / "empty-bin").mkdir()
    return {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path / "home")}


def logged_in_az(tmp_path: Path, *, subscriptions: list[dict[str, str]] | None = None) -> dict[str, str]:
    """An az on PATH with a profile in AZURE_CONFIG_DIR, as AzureCLI@2 leaves it (UTF-8 with BOM)."""
    bin_dir, config = tmp_path / "bin", tmp_path / "azconfig"
    bin_dir.mkdir()
    config.mkdir()
    az = bin_dir / "az"
    az.write_text("#!/bin/sh\nexit 1\n")
    az.chmod(0o755)
    profile = {"subscriptions": [{"id": "s", "isDefault": True}] if subscriptions is None else subscriptions}
    (config / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8-sig")
    return {"PATH": str(bin_dir), "AZURE_CONFIG_DIR": str(config)}


def test_auto_picks_azure_pipelines_when_the_service_connection_variables_and_job_token_are_set(
    tmp_path: Path,
) -> None:
    choice = describe_credential({**ADO, **logged_in_az(tmp_path)})
    assert (choice.mode, choice.name) == ("azure-pipelines", "AzurePipelinesCredential")
    assert "SYSTEM_ACCESSTOKEN" in choice.reason


def test_auto_falls_back_to_the_cli_login_when_the_job_token_is_not_mapped_and_says_why(tmp_path: Path) -> None:
    env = {k: v for k, v in ADO.items() if k != "SYSTEM_ACCESSTOKEN"} | logged_in_az(tmp_path)
    choice = describe_credential(env)
    assert (choice.mode, choice.name) == ("azure-cli", "AzureCliCredential")
    assert "SYSTEM_ACCESSTOKEN not set, so not AzurePipelinesCredential" in choice.reason


def test_auto_without_any_login_names_the_missing_pipeline_variables(no_az: dict[str, str]) -> None:
    env = {k: v for k, v in ADO.items() if k != "SYSTEM_ACCESSTOKEN"} | no_az
    choice = describe_credential(env)
    assert choice.name == "DefaultAzureCredential"
    assert "SYSTEM_ACCESSTOKEN not set" in choice.reason and "az is not on PATH" in choice.reason


def test_auto_picks_workload_identity_only_with_a_token_file(no_az: dict[str, str]) -> None:
    federated = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_FEDERATED_TOKEN_FILE": "/tmp/token"}
    assert describe_credential(federated | no_az).name == "WorkloadIdentityCredential"
    without_file = {k: v for k, v in federated.items() if k != "AZURE_FEDERATED_TOKEN_FILE"} | no_az
    assert describe_credential(without_file).name == "DefaultAzureCredential"


def test_auto_prefers_an_explicit_client_secret_over_a_cli_login(tmp_path: Path) -> None:
    env = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"} | logged_in_az(tmp_path)
    choice = describe_credential(env)
    assert (choice.mode, choice.name) == ("default", "DefaultAzureCredential")
    assert "EnvironmentCredential" in choice.reason


def test_auto_picks_managed_identity_from_identity_endpoint_before_a_cli_login(tmp_path: Path) -> None:
    env = {"IDENTITY_ENDPOINT": "https://127.0.0.1:1/identity/ci", "IDENTITY_HEADER": "h"} | logged_in_az(tmp_path)
    assert describe_credential(env).name == "ManagedIdentityCredential"


def test_an_az_on_path_without_a_login_is_not_taken_for_a_login(tmp_path: Path) -> None:
    env = logged_in_az(tmp_path, subscriptions=[])
    choice = describe_credential(env | {"HOME": str(tmp_path)})
    assert choice.name == "DefaultAzureCredential"
    assert "lists no login" in choice.reason


def test_a_sandbox_state_dir_alone_does_not_claim_managed_identity(no_az: dict[str, str]) -> None:
    assert describe_credential({"CICD_SANDBOX_STATE_DIR": "/tmp/x"} | no_az).name == "DefaultAzureCredential"


def test_an_explicit_mode_missing_its_variables_is_a_config_error_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CICD_CREDENTIAL", "azure-pipelines")
    monkeypatch.setenv("AZURESUBSCRIPTION_CLIENT_ID", "c")
    with pytest.raises(ConfigError) as caught:
        build_credential()
    assert "SYSTEM_ACCESSTOKEN" in caught.value.message and "AZURESUBSCRIPTION_TENANT_ID" in caught.value.message
    assert "$(System.AccessToken)" in caught.value.hint


def test_an_unknown_credential_value_lists_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CICD_CREDENTIAL", "interactive")
    with pytest.raises(ConfigError, match="not a credential choice") as caught:
        describe_credential()
    assert "azure-pipelines" in caught.value.hint


@pytest.mark.parametrize(("mode", "env", "cls"), [
    ("azure-pipelines", ADO, AzurePipelinesCredential),
    ("workload-identity", {"AZURE_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
                           "AZURE_TENANT_ID": "22222222-2222-4222-8222-222222222222",
                           "AZURE_FEDERATED_TOKEN_FILE": "/tmp/token"}, WorkloadIdentityCredential),
    ("managed-identity", {}, ManagedIdentityCredential),
    ("default", {}, DefaultAzureCredential),
])
def test_each_mode_builds_the_class_it_names(
    mode: str, env: dict[str, str], cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CICD_CREDENTIAL", mode)
    assert type(build_credential()) is cls
    assert describe_credential().name == cls.__name__


def test_azure_cli_mode_needs_az_on_path_and_builds_the_cli_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_az: dict[str, str]
) -> None:
    monkeypatch.setenv("CICD_CREDENTIAL", "azure-cli")
    monkeypatch.setenv("PATH", no_az["PATH"])
    with pytest.raises(ConfigError, match="az on PATH"):
        build_credential()
    for name, value in logged_in_az(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert type(build_credential()) is AzureCliCredential


def test_the_flag_overrides_the_environment_for_one_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CICD_CREDENTIAL", "managed-identity")
    with selected_mode("default"):
        assert describe_credential().mode == "default"
        assert describe_credential().reason.startswith("--credential default")
    assert describe_credential().mode == "managed-identity"
    assert build_parser().parse_args(["--credential", "azure-pipelines", "doctor"]).credential == "azure-pipelines"


def test_doctor_reports_the_credential_and_fails_on_a_mode_without_its_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--output", "json", "--credential", "workload-identity", "doctor", "--skip-import"])
    doc = json.loads(capsys.readouterr().out)
    row = next(c for c in doc["checks"] if c["name"] == "credential")
    assert code == 2
    assert row["ok"] is False
    assert "WorkloadIdentityCredential" in row["detail"] and "AZURE_FEDERATED_TOKEN_FILE" in row["detail"]


def test_the_credential_is_announced_once_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(credentials, "_announced", set())
    monkeypatch.setenv("CICD_CREDENTIAL", "default")
    with caplog.at_level("INFO", logger="cicd_tools.credentials"):
        build_credential()
        build_credential()
    lines = [r.getMessage() for r in caplog.records if r.name == "cicd_tools.credentials"]
    assert lines == ["credential: DefaultAzureCredential (CICD_CREDENTIAL=default (explicit))"]


GITHUB = {
    "AZURE_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
    "AZURE_TENANT_ID": "22222222-2222-4222-8222-222222222222",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.actions.example/abc/_apis/idtoken?api-version=2.0",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
}


def test_github_id_token_variables_make_workload_identity_ask_github_for_each_token(
    monkeypatch: pytest.MonkeyPatch, no_az: dict[str, str]
) -> None:
    choice = describe_credential(GITHUB | no_az)
    assert (choice.mode, choice.name) == ("workload-identity", "ClientAssertionCredential")
    assert "id-token: write" in choice.reason
    for name, value in GITHUB.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CICD_CREDENTIAL", "workload-identity")
    assert type(build_credential()) is ClientAssertionCredential
    # A token file, when present, is what WorkloadIdentityCredential reads instead.
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/tmp/token")
    assert type(build_credential()) is WorkloadIdentityCredential


@responses.activate
def test_the_github_token_request_sends_the_exchange_audience_and_the_request_token() -> None:
    responses.get("https://pipelines.actions.example/abc/_apis/idtoken",
                  json={"count": 9, "value": "header.claims.sig"})
    fetch = github_id_token(GITHUB["ACTIONS_ID_TOKEN_REQUEST_URL"], "request-token")
    assert fetch() == "header.claims.sig"
    sent = responses.calls[0].request
    assert sent.url == ("https://pipelines.actions.example/abc/_apis/idtoken?api-version=2.0"
                        "&audience=api%3A%2F%2FAzureADTokenExchange")
    assert sent.headers["Authorization"] == "Bearer request-token"


@responses.activate
def test_a_refused_github_token_request_names_the_missing_permission() -> None:
    responses.get("https://pipelines.actions.example/abc/_apis/idtoken", status=401, json={"message": "Bad"})
    fetch = github_id_token(GITHUB["ACTIONS_ID_TOKEN_REQUEST_URL"], "request-token")
    with pytest.raises(ClientAuthenticationError, match="id-token: write"):
        fetch()


# What azure-identity 1.2x's DefaultAzureCredential raises when nothing answers (copied from a real run, abridged).
CHAINED_FAILURE = (
    "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
    "Attempted credentials:\n"
    "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are not fully"
    " configured.\nVisit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot to troubleshoot"
    " this issue.\n"
    "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable.\n"
    "\tAzureCliCredential: Azure CLI not found on path\n"
    "To mitigate this issue, please refer to the troubleshooting guidelines here at"
    " https://aka.ms/azsdk/python/identity/defaultazurecredential/troubleshoot."
)


def test_a_chained_credential_failure_is_summarised_in_two_lines() -> None:
    from cicd_tools.support.azerrors import summarize_auth_failure

    text = summarize_auth_failure(CHAINED_FAILURE)
    assert text.splitlines() == [
        "DefaultAzureCredential failed to retrieve a token from the included credentials.",
        "  tried: EnvironmentCredential (unavailable); ManagedIdentityCredential (unavailable);"
        " AzureCliCredential (Azure CLI not found on path)",
    ]


def test_a_single_credential_failure_keeps_its_first_line() -> None:
    from cicd_tools.support.azerrors import summarize_auth_failure

    assert summarize_auth_failure("AADSTS700213: No matching federated identity record found.\nTrace ID: x") == \
        "AADSTS700213: No matching federated identity record found."
