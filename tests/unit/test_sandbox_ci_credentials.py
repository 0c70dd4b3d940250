"""`sandbox env --credential MODE`: the variables and files each CI credential needs; a clean switch of modes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cicd_tools.sandbox.identity.ci_credentials import MODE_VARIABLES, credential_env
from cicd_tools.sandbox.identity.ci_oidc import EXCHANGE_AUDIENCE, GITHUB_ISSUER, GITHUB_SUBJECT
from cicd_tools.sandbox.identity.identity import signing_key, verify_token

BASE = {  # what a running sandbox records in sandbox.json
    "REQUESTS_CA_BUNDLE": "/state/certs/ca.pem",
    "IDENTITY_ENDPOINT": "https://127.0.0.1:4443/identity/ci-pipeline",
    "IDENTITY_HEADER": "0123456789abcdef",
    "CICD_ARM_ENDPOINT": "https://127.0.0.1:4443",
    "CICD_SUBSCRIPTION_ID": "5a4db0c0-0000-4000-8000-000000000001",
    "CICD_SANDBOX_SECRET": "unit-test-sandbox-secret",
}


def test_each_explicit_mode_sets_cicd_credential_and_unsets_what_other_modes_set(tmp_path: Path) -> None:
    for mode in ("managed-identity", "azure-cli", "workload-identity", "azure-pipelines"):
        env, unset = credential_env(mode, BASE, tmp_path)
        assert env["CICD_CREDENTIAL"] == mode
        assert set(unset) == set(MODE_VARIABLES) - set(env)
        assert env["REQUESTS_CA_BUNDLE"] == BASE["REQUESTS_CA_BUNDLE"]
        assert ("IDENTITY_ENDPOINT" in env) is (mode == "managed-identity")


def test_azure_cli_puts_an_owner_only_az_first_on_path_and_a_login_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    env, _ = credential_env("azure-cli", BASE, tmp_path)
    az = tmp_path / "bin" / "az"
    assert env["PATH"] == f"{tmp_path / 'bin'}:/usr/bin"
    assert stat.S_IMODE(az.stat().st_mode) == 0o700 and az.read_text().startswith("#!/bin/sh\n")
    login = tmp_path / "azure" / "cicd-sandbox-login.json"
    assert stat.S_IMODE(login.stat().st_mode) == 0o600
    assert env["AZURE_CONFIG_DIR"] == str(tmp_path / "azure")
    profile = json.loads((tmp_path / "azure" / "azureProfile.json").read_text())
    assert profile["subscriptions"][0]["id"] == BASE["CICD_SUBSCRIPTION_ID"]


def test_workload_identity_writes_a_github_token_the_federated_credential_accepts(tmp_path: Path) -> None:
    env, _ = credential_env("workload-identity", BASE, tmp_path)
    # signed with the sandbox's key: its Entra endpoint refuses an assertion it did not sign
    claims = verify_token(Path(env["AZURE_FEDERATED_TOKEN_FILE"]).read_text(), signing_key(BASE["CICD_SANDBOX_SECRET"]))
    assert (claims["iss"], claims["sub"], claims["aud"]) == (GITHUB_ISSUER, GITHUB_SUBJECT, EXCHANGE_AUDIENCE)
    assert env["AZURE_AUTHORITY_HOST"] == BASE["CICD_ARM_ENDPOINT"]
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"].startswith(BASE["CICD_ARM_ENDPOINT"] + "/")


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown credential"):
        credential_env("interactive", BASE, tmp_path)


class _EntraHub:
    """What the token endpoint reads from a hub: its state, layout and signing key."""

    def __init__(self) -> None:
        from cicd_tools.sandbox.layout import SandboxLayout
        from cicd_tools.sandbox.state import CloudState

        self.layout = SandboxLayout()
        self.state = CloudState(self.layout, propagation_delay=0)
        self.signing_key = signing_key(BASE["CICD_SANDBOX_SECRET"])
        self.identity_header = BASE["IDENTITY_HEADER"]


@pytest.mark.parametrize(("change", "code"), [
    # Azure/login#482, Azure/azure-workload-identity#1200: a subject no record holds.
    ({"subject": "repo:someone/fork:pull_request"}, 700213),
    # Azure/login#515, #517: a subject that differs from a record only by case (case-sensitive matching).
    ({"subject": GITHUB_SUBJECT.upper()}, 7002138),
    # Azure/azure-sdk-for-js identity TROUBLESHOOTING.md: an audience, and an issuer, no record holds.
    ({"audience": "api://SomethingElse"}, 700212),
    ({"issuer": "https://token.actions.githubusercontent.com/"}, 700211),
])
def test_entra_names_the_claim_no_federated_record_matches(change: dict[str, str], code: int) -> None:
    from email.message import Message
    from urllib.parse import urlencode

    from cicd_tools.sandbox.identity import entra
    from cicd_tools.sandbox.identity.ci_oidc import mint_oidc_token
    from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT
    from cicd_tools.sandbox.server import Request

    hub = _EntraHub()
    claims = {"issuer": GITHUB_ISSUER, "subject": GITHUB_SUBJECT, "audience": EXCHANGE_AUDIENCE, **change}
    assertion = mint_oidc_token(claims["issuer"], claims["subject"], key=hub.signing_key,
                                audience=claims["audience"], lifetime=600)
    form = {"grant_type": "client_credentials", "client_id": entra.client_id_of("ci-pipeline"),
            "client_assertion_type": entra.JWT_BEARER, "client_assertion": assertion,
            "scope": "https://storage.azure.com/.default"}
    req = Request("POST", f"/{SANDBOX_TENANT}/oauth2/v2.0/token", [], Message(), urlencode(form).encode(),
                  "127.0.0.1", {"tenant": SANDBOX_TENANT})
    answer = entra.token(req, hub)  # type: ignore[arg-type]
    body = json.loads(answer.body)
    assert (answer.status, body["error"], body["error_codes"]) == (401, "invalid_client", [code])
    assert body["error_description"].startswith(f"AADSTS{code}: No matching federated identity record found for "
                                                "presented assertion ")
