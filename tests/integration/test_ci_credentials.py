"""The credentials real CI uses, against the sandbox: AzureCliCredential (the az stand-in),
WorkloadIdentityCredential (a GitHub OIDC token file) and AzurePipelinesCredential (SYSTEM_OIDCREQUESTURI),
each through the sandbox's Entra endpoint, plus the MSI endpoint's client_id."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    AzureCliCredential,
    AzurePipelinesCredential,
    ClientAssertionCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from azure.identity._credentials.azure_cli import parse_token

from cicd_tools import credentials
from cicd_tools.cli.main import main
from cicd_tools.sandbox.identity.ci_credentials import credential_env
from cicd_tools.sandbox.identity.ci_oidc import (
    ADO_ISSUER,
    ADO_SERVICE_CONNECTION_ID,
    GITHUB_ISSUER,
    GITHUB_SUBJECT,
    github_oidc_token,
)
from cicd_tools.sandbox.identity.entra import client_id_of, client_secret_of
from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, decode_token
from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.sandbox.server import SECRET_HEADER

CLASSES: dict[str, type[Any]] = {
    "azure-cli": AzureCliCredential,
    "workload-identity": WorkloadIdentityCredential,
    "github-id-token-request": ClientAssertionCredential,
    "azure-pipelines": AzurePipelinesCredential,
}
OTHERS = (ManagedIdentityCredential, DefaultAzureCredential)


def use_credential(sb: Sandbox, mode: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What `eval "$(cicd-tools sandbox env --credential MODE)"` does to a shell."""
    env, unset = credential_env(mode, sb.env(), where)
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(credentials, "_announced", set())  # the once-per-process log line, again
    return env


def spy_tokens(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> list[dict[str, Any]]:
    """Record every token ``cls`` itself hands out (get_token and get_token_info), with its claims."""
    issued: list[dict[str, Any]] = []

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def spy(self: Any, *scopes: str, **kwargs: Any) -> Any:
            token = original(self, *scopes, **kwargs)
            if type(self) is cls:
                issued.append({"scopes": scopes, **decode_token(token.token)})
            return token
        return spy

    for name in ("get_token", "get_token_info"):
        monkeypatch.setattr(cls, name, wrap(getattr(cls, name)))
    return issued


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "src" / "train").mkdir(parents=True)
    (root / "src" / "train" / "train.py").write_text("print('training')\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--ci", "plain", "--output", "json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


FLOWS = {  # case: (sandbox env --credential, variable dropped, class, the exchanges the sandbox must see)
    "azure-cli": ("azure-cli", None, AzureCliCredential, {("client_secret", "")}),
    "workload-identity": ("workload-identity", None, WorkloadIdentityCredential,
                          {("client_assertion", GITHUB_ISSUER)}),
    "github-id-token-request": ("workload-identity", "AZURE_FEDERATED_TOKEN_FILE", ClientAssertionCredential,
                                {("oidc-request", GITHUB_ISSUER), ("client_assertion", GITHUB_ISSUER)}),
    "azure-pipelines": ("azure-pipelines", None, AzurePipelinesCredential,
                        {("oidc-request", ADO_ISSUER), ("client_assertion", ADO_ISSUER)}),
}


@pytest.mark.parametrize("case", list(FLOWS))
def test_the_ci_flow_runs_with_the_runner_credential_class(
    case: str, sandbox_env: Sandbox, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = sandbox_env
    mode, dropped, cls, exchanges = FLOWS[case]
    use_credential(sb, mode, tmp_path / "state", monkeypatch)
    if dropped:
        monkeypatch.delenv(dropped)
    ours = spy_tokens(monkeypatch, cls)
    # AzurePipelinesCredential hands its work to an inner ClientAssertionCredential: that one is a part, not another.
    parts = (ClientAssertionCredential,) if cls is AzurePipelinesCredential else ()
    others = [spy_tokens(monkeypatch, other) for other in (*OTHERS, *CLASSES.values())
              if other is not cls and other not in parts]
    sb.state.clear_requests()

    rc, opened, err = run(capsys, "firewall", "open", "--ttl", "20m")
    assert (rc, opened["ip"]) == (0, sb.agent_ip), err
    assert f"credential: {cls.__name__} (CICD_CREDENTIAL={mode}" in err
    assert run(capsys, "storage", "smoke")[0] == 0
    rc, registered, err = run(capsys, "code", "register", "--name", "training-code", "--path", "src/train",
                              "--version", "1", "--pointer")
    assert rc == 0, err
    assert (registered["version"], registered["pointer"]["version"]) == ("1", "1")
    rc, _, err = run(capsys, "firewall", "close")
    assert rc == 0, err
    assert [r["value"] for r in sb.control.account()["properties"]["networkAcls"]["ipRules"]] == []

    # The class itself produced every token: for ARM and for storage, all as the CI principal.
    audiences = {claims["aud"] for claims in ours}
    assert {sb.arm_endpoint, "https://storage.azure.com"} <= audiences
    assert {claims["name"] for claims in ours} == {"ci-pipeline"}
    assert all(not tokens for tokens in others)
    # The sandbox saw the matching exchanges, and no managed-identity token at all.
    issued = sb.state.requests("issuance")
    assert {(r["grant"], r.get("assertionIssuer") or r.get("issuer", "")) for r in issued} == exchanges
    agents = {r["userAgent"].split("/")[0] for r in issued if r["grant"] != "oidc-request"}
    assert agents == ({"AZURECLI"} if mode == "azure-cli" else {"azsdk-python-identity"})


def test_the_az_stand_in_answers_in_the_azure_cli_shape(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_credential(sandbox_env, "azure-cli", tmp_path, monkeypatch)
    az = tmp_path / "bin" / "az"

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(az), "account", "get-access-token", "--output", "json", *args],
                              capture_output=True, text=True, timeout=60, env=env, cwd="/")

    plain = call("--resource", "https://storage.azure.com")
    assert plain.returncode == 0, plain.stderr
    doc = json.loads(plain.stdout)
    assert set(doc) == {"accessToken", "expiresOn", "expires_on", "subscription", "tenant", "tokenType"}
    assert (doc["subscription"], doc["tenant"], doc["tokenType"]) == (
        sandbox_env.subscription_id, SANDBOX_TENANT, "Bearer")
    token = parse_token(plain.stdout)  # azure-identity's own parser
    assert token is not None and token.expires_on == doc["expires_on"]
    assert decode_token(doc["accessToken"])["aud"] == "https://storage.azure.com"

    scoped = call("--scope", sandbox_env.arm_endpoint + "/.default", "--tenant", SANDBOX_TENANT)
    assert scoped.returncode == 0, scoped.stderr
    assert "subscription" not in json.loads(scoped.stdout)

    foreign = call("--resource", "https://storage.azure.com", "--tenant", "contoso.onmicrosoft.com")
    assert foreign.returncode == 1 and foreign.stderr.startswith("ERROR: AADSTS90002: Tenant")

    (tmp_path / "azure" / "azureProfile.json").unlink()
    logged_out = call("--resource", "https://storage.azure.com")
    assert (logged_out.returncode, logged_out.stderr) == (1, "ERROR: Please run 'az login' to setup account.\n")
    with pytest.raises(ClientAuthenticationError, match="az login"):
        AzureCliCredential().get_token("https://storage.azure.com/.default")


def test_a_token_file_with_a_foreign_subject_is_refused_with_aadsts700213(
    sandbox_env: Sandbox, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = use_credential(sandbox_env, "workload-identity", tmp_path, monkeypatch)
    token_file = Path(env["AZURE_FEDERATED_TOKEN_FILE"])
    key = sandbox_env.signing_key
    token_file.write_text(github_oidc_token(key=key, subject="repo:someone/fork:pull_request"))
    # The flow's first step fails fast, exit 3, with Entra's reason. (`storage smoke` alone would fail the same
    # way after ~80 s: azure-storage-blob retries a refused token like any AzureError.)
    rc, doc, err = run(capsys, "firewall", "open", "--ttl", "20m")
    assert (rc, doc["error"]) == (3, "AuthenticationFailed")
    # Current Entra's code and wording for a subject no record holds (Azure/login#482).
    assert ("AADSTS700213: No matching federated identity record found for presented assertion subject "
            "'repo:someone/fork:pull_request'") in err

    # Entra's error shape, as the endpoint answers it.
    answer = requests.post(
        f"{sandbox_env.arm_endpoint}/{SANDBOX_TENANT}/oauth2/v2.0/token", verify=str(sandbox_env.ca_bundle),
        data={"grant_type": "client_credentials", "client_id": client_id_of("ci-pipeline"),
              "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
              "client_assertion": github_oidc_token(key=sandbox_env.signing_key, audience="api://SomethingElse"),
              "scope": "https://storage.azure.com/.default"}, timeout=30,
    )
    body = answer.json()
    # An audience no record holds: AADSTS700212, invalid_client (azure-sdk-for-js identity TROUBLESHOOTING.md).
    assert answer.status_code == 401
    assert (body["error"], body["error_codes"]) == ("invalid_client", [700212])
    assert "presented assertion audience 'api://SomethingElse'" in body["error_description"]
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)


def test_a_subject_that_differs_only_in_case_is_refused_with_aadsts7002138(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Federated credentials match case-sensitively; Entra says so with its own code (Azure/login#515, #517).
    env = use_credential(sandbox_env, "workload-identity", tmp_path, monkeypatch)
    subject = GITHUB_SUBJECT.replace("main", "Main")
    Path(env["AZURE_FEDERATED_TOKEN_FILE"]).write_text(github_oidc_token(key=sandbox_env.signing_key, subject=subject))
    with pytest.raises(ClientAuthenticationError, match=r"AADSTS7002138: .*case-insensitive comparison, "
                       r"but not with case-sensitive comparison"):
        WorkloadIdentityCredential().get_token("https://storage.azure.com/.default")


def test_an_expired_oidc_token_is_refused_with_aadsts700024(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_credential(sandbox_env, "workload-identity", tmp_path, monkeypatch)
    key = sandbox_env.signing_key
    Path(env["AZURE_FEDERATED_TOKEN_FILE"]).write_text(github_oidc_token(key=key, lifetime=-60))
    credential = WorkloadIdentityCredential()
    with pytest.raises(ClientAuthenticationError, match="AADSTS700024"):
        credential.get_token("https://storage.azure.com/.default")


def test_a_mapped_federated_credential_gives_its_own_principal(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_credential(sandbox_env, "workload-identity", tmp_path, monkeypatch)
    subject = "repo:contoso/mlops:environment:release"
    control = f"{sandbox_env.control_url}/identity/federated-credentials"
    created = requests.post(control, json={"name": "release", "principal": "release-pipeline",
                                           "issuer": GITHUB_ISSUER, "subject": subject},
                            headers={SECRET_HEADER: sandbox_env.secret}, verify=str(sandbox_env.ca_bundle), timeout=30)
    assert created.status_code == 201, created.text
    key = sandbox_env.signing_key
    Path(env["AZURE_FEDERATED_TOKEN_FILE"]).write_text(github_oidc_token(key=key, subject=subject))
    credential = WorkloadIdentityCredential(client_id=client_id_of("release-pipeline"))
    claims = decode_token(credential.get_token("https://storage.azure.com/.default").token)
    assert claims["name"] == "release-pipeline"
    # The same subject presented for the CI app is still refused: a record binds one app.
    wrong_app = WorkloadIdentityCredential(client_id=client_id_of("ci-pipeline"))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        wrong_app.get_token("https://storage.azure.com/.default")


def test_the_oidc_request_endpoint_wants_the_job_token_and_a_known_service_connection(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_credential(sandbox_env, "azure-pipelines", tmp_path, monkeypatch)
    verify = str(sandbox_env.ca_bundle)
    url = env["SYSTEM_OIDCREQUESTURI"]

    def post(token: str, connection: str) -> requests.Response:
        return requests.post(url, params={"api-version": "7.1", "serviceConnectionId": connection},
                             headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=30)

    good = post(env["SYSTEM_ACCESSTOKEN"], ADO_SERVICE_CONNECTION_ID)
    assert good.status_code == 200
    assert decode_token(good.json()["oidcToken"])["iss"] == ADO_ISSUER
    assert post("not-the-job-token", ADO_SERVICE_CONNECTION_ID).status_code == 401
    assert post(env["SYSTEM_ACCESSTOKEN"], "00000000-0000-0000-0000-000000000000").status_code == 404

    wrong = AzurePipelinesCredential(
        tenant_id=SANDBOX_TENANT, client_id=env["AZURESUBSCRIPTION_CLIENT_ID"],
        service_connection_id=ADO_SERVICE_CONNECTION_ID, system_access_token="not-the-job-token")
    with pytest.raises(ClientAuthenticationError, match="TF400813"):
        wrong.get_token("https://storage.azure.com/.default")


def test_the_msi_endpoint_honours_a_known_client_id_and_refuses_an_unknown_one(sandbox_env: Sandbox) -> None:
    factory = ManagedIdentityCredential(client_id=client_id_of("adf-factory"))
    assert decode_token(factory.get_token("https://storage.azure.com/.default").token)["name"] == "adf-factory"
    unknown = ManagedIdentityCredential(client_id="0b8e9f7e-1111-4222-8333-444455556666")
    with pytest.raises(ClientAuthenticationError, match="No User Assigned or Delegated Managed Identity"):
        unknown.get_token("https://storage.azure.com/.default")


@pytest.mark.parametrize(("change", "status", "error", "code"), [
    ({"client_id": "0b8e9f7e-1111-4222-8333-444455556666"}, 400, "unauthorized_client", 700016),
    ({"client_secret": "not-the-secret"}, 401, "invalid_client", 7000215),
    ({"scope": "https://storage.azure.com/user_impersonation"}, 400, "invalid_scope", 1002012),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
])
def test_the_token_endpoint_refuses_like_entra(
    sandbox_env: Sandbox, change: dict[str, str], status: int, error: str, code: int
) -> None:
    form = {"grant_type": "client_credentials", "client_id": client_id_of("ci-pipeline"),
            "client_secret": client_secret_of(sandbox_env.identity_header, "ci-pipeline"),
            "scope": "https://storage.azure.com/.default", **change}
    answer = requests.post(f"{sandbox_env.arm_endpoint}/{SANDBOX_TENANT}/oauth2/v2.0/token", data=form,
                           verify=str(sandbox_env.ca_bundle), timeout=30)
    body = answer.json()
    assert (answer.status_code, body["error"], body["error_codes"]) == (status, error, [code])
    assert body["error_description"].startswith(f"AADSTS{code}: ")


def test_msal_finds_the_token_endpoint_through_the_tenant_discovery_document(sandbox_env: Sandbox) -> None:
    import msal

    app = msal.ConfidentialClientApplication(
        client_id_of("ci-pipeline"), client_credential=client_secret_of(sandbox_env.identity_header, "ci-pipeline"),
        authority=f"{sandbox_env.arm_endpoint}/{SANDBOX_TENANT}", instance_discovery=False)
    result = app.acquire_token_for_client(["https://storage.azure.com/.default"])
    assert decode_token(result["access_token"])["name"] == "ci-pipeline"
    paths = [r["path"] for r in sandbox_env.state.requests("identity")]
    assert f"/{SANDBOX_TENANT}/v2.0/.well-known/openid-configuration" in paths
