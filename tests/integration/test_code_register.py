"""`code register` / `code plan` with the real azure-ai-ml against the sandbox workspace and its storage.

Run by scripts/test-sdk-matrix.sh on the newest and the oldest azure-ai-ml the project supports.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from cicd_tools.cli import main
from cicd_tools.codeassets.register import RegistrationResult
from cicd_tools.codeassets.workspace import WorkspaceCodes, WorkspaceRef
from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.sandbox.state import AGENT_IP

POINTERS = "ml-globals"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with one code folder; the working directory for the CLI."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    code = root / "src" / "train"
    code.mkdir(parents=True)
    (code / "train.py").write_text("print('training')\n")
    (code / "util.py").write_text("SEED = 1\n")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def asset() -> str:
    return f"training-code-{uuid.uuid4().hex[:8]}"


def cli(capsys: pytest.CaptureFixture[str], *argv: str, ci: str = "plain") -> tuple[int, Any, str]:
    """Run the CLI in-process with ``--output json``; the parsed stdout document and stderr."""
    code = main(["--output", "json", "--ci", ci, *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def register(capsys: pytest.CaptureFixture[str], asset: str, version: str, *extra: str) -> tuple[int, Any, str]:
    return cli(capsys, "code", "register", "--name", asset, "--path", "src/train", "--version", version, *extra)


def open_pointer_storage(sb: Sandbox) -> None:
    """The private pointer account: the agent's IP rule in effect, and the pointer container."""
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    service = BlobServiceClient(sb.private_blob_endpoint, credential=ManagedIdentityCredential())
    with contextlib.suppress(ResourceExistsError):
        service.create_container(POINTERS)


def read_pointer_doc(sb: Sandbox, asset: str) -> dict[str, Any]:
    service = BlobServiceClient(sb.private_blob_endpoint, credential=ManagedIdentityCredential())
    raw = service.get_blob_client(POINTERS, f"code-assets/{asset}/latest.json").download_blob().readall()
    return dict(json.loads(raw))


def test_unchanged_code_returns_the_first_version_everywhere_and_says_so(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_pointer_storage(sandbox_env)
    rc, first, err = cli(capsys, "-vv", "code", "register", "--name", asset, "--path", "src/train",
                         "--version", "1", "--pointer")
    assert rc == 0
    assert (first["version"], first["requestedVersion"], first["dedup"]) == ("1", "1", False)
    # The upload SAS never reaches output or logs, not even with -vv (HTTP logging on).
    assert "startPendingUpload" in err
    assert not re.search(r"sig=(?!\*\*\*|REDACTED)", json.dumps(first) + err)

    result_file = repo / "out" / "code.json"
    rc, second, err = cli(capsys, "code", "register", "--name", asset, "--path", "src/train", "--version", "2",
                          "--pointer", "--result-file", str(result_file), ci="azure-devops")
    assert rc == 0
    assert (second["version"], second["requestedVersion"], second["dedup"]) == ("1", "2", True)
    assert second["assetId"] == first["assetId"]
    assert second["assetId"].endswith(f"/codes/{asset}/versions/1")
    assert second["pointer"]["version"] == "1"
    assert "##vso[task.setvariable variable=codeVersion;isOutput=true;issecret=false;]1" in err
    assert "##vso[task.logissue type=warning;]" in err and "already registered as version 1" in err
    assert json.loads(result_file.read_text()) == second
    pointer = read_pointer_doc(sandbox_env, asset)
    assert (pointer["version"], pointer["requestedVersion"], pointer["assetId"]) == ("1", "2", first["assetId"])


def test_text_output_says_plainly_that_dedup_returned_an_older_version(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["code", "register", "--name", asset, "--path", "src/train", "--version", "1"]) == 0
    capsys.readouterr()
    assert main(["code", "register", "--name", asset, "--path", "src/train", "--version", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{asset}: requested version 2, Azure ML returned EXISTING version 1" in out


def test_changed_code_gets_the_requested_version(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register(capsys, asset, "1")[0] == 0
    (repo / "src" / "train" / "util.py").write_text("SEED = 2\n")
    rc, doc, _ = register(capsys, asset, "2")
    assert rc == 0
    assert (doc["version"], doc["dedup"]) == ("2", False)


def test_unique_gives_unchanged_code_a_new_version_and_a_rerun_the_same_one(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register(capsys, asset, "1")[0] == 0
    rc, unique, _ = register(capsys, asset, "2", "--unique")
    assert rc == 0
    assert (unique["version"], unique["dedup"], unique["unique"]) == ("2", False, True)
    assert not (repo / "src" / "train" / ".aml-code-asset-version").exists()
    rc, rerun, _ = register(capsys, asset, "2", "--unique")
    assert (rc, rerun["version"], rerun["dedup"]) == (0, "2", True)


def test_a_requested_version_holding_other_content_is_a_clear_contract_error(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register(capsys, asset, "5")[0] == 0
    (repo / "src" / "train" / "util.py").write_text("SEED = 3\n")
    rc, doc, err = register(capsys, asset, "5")
    assert rc == 5
    assert doc["error"] == "VersionConflict"
    assert doc["code"] == "VersionExistsWithOtherContent"
    assert f"{asset}:5 already exists in the workspace with other content" in err


def test_the_upload_obeys_the_workspace_storage_firewall(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account = sandbox_env.layout.workspace_storage_account
    sandbox_env.control.set_account_properties(account, network_acls={"defaultAction": "Deny", "ipRules": []})
    rc, doc, err = register(capsys, asset, "1")
    assert rc == 3
    assert (doc["error"], doc["code"]) == ("NetworkDenied", "AuthorizationFailure")
    assert "firewall" in err
    blob_calls = [r for r in sandbox_env.control.requests("blob") if f"/{account}/" in r["path"]]
    assert blob_calls and {r["status"] for r in blob_calls} == {403}
    # With the agent's IP allowed the same registration goes through.
    sandbox_env.control.set_account_properties(
        account, network_acls={"ipRules": [{"value": AGENT_IP, "action": "Allow"}]})
    rc, doc, _ = register(capsys, asset, "1")
    assert (rc, doc["version"]) == (0, "1")


def test_the_sdk_request_sequence_is_the_one_azure_facts_documents(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert register(capsys, asset, "1")[0] == 0
    assert register(capsys, asset, "2")[0] == 0
    codes = f"/codes/{asset}/versions"
    seen = [(r["method"], r["path"].split(codes, 1)[1] if codes in r["path"] else r["service"])
            for r in sandbox_env.control.requests() if r["service"] in ("arm", "blob") and
            (codes in r["path"] or r["service"] == "blob")]
    # Our own hash lookup precedes each SDK call (to tell dedup apart); then the SDK's own requests.
    miss = [("GET", ""), ("GET", ""), ("POST", "/1/startPendingUpload"), ("HEAD", "blob"), ("PUT", "blob"),
            ("PUT", "blob"), ("PUT", "blob"), ("PUT", "/1")]
    hit = [("GET", ""), ("GET", ""), ("GET", "/1")]
    assert seen == miss + hit


def test_several_assets_register_concurrently_and_one_failure_hides_nothing(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    validate = repo / "src" / "validate"
    validate.mkdir()
    (validate / "validate.py").write_text("print('validating')\n")
    (repo / "src" / "empty").mkdir()
    rc, docs, _ = cli(capsys, "code", "register", "--version", "9",
                      "--asset", f"{asset}=src/train", "--asset", f"v-{asset}=src/validate",
                      "--asset", f"e-{asset}=src/empty")
    assert rc == 2
    assert [d["version"] for d in docs] == ["9", "9", None]
    assert docs[2]["error"]["code"] == "empty"


def test_plan_predicts_dedup_new_versions_and_conflicts_before_any_upload(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = ["code", "plan", "--name", asset, "--path", "src/train", "--version"]
    rc, fresh, _ = cli(capsys, *plan, "1")
    assert (rc, fresh["willUpload"], fresh["expectedVersion"]) == (0, True, "1")
    assert not [r for r in sandbox_env.control.requests("blob")]
    assert register(capsys, asset, "1")[0] == 0
    rc, known, _ = cli(capsys, *plan, "2")
    assert (known["dedup"], known["expectedVersion"], known["existingVersion"]) == (True, "1", "1")
    (repo / "src" / "train" / "util.py").write_text("SEED = 4\n")
    rc, clash, _ = cli(capsys, *plan, "1")
    assert (rc, clash["conflict"], clash["expectedVersion"]) == (0, True, "1")
    assert any("Asset paths cannot be updated" in w for w in clash["warnings"])


def test_the_pointer_refuses_a_version_the_workspace_does_not_hold(sandbox_env: Sandbox, asset: str) -> None:
    from cicd_tools.codeassets.publishing import publish_registration
    from cicd_tools.errors import ContractViolation

    open_pointer_storage(sandbox_env)
    ws = WorkspaceRef(sandbox_env.subscription_id, sandbox_env.resource_group, sandbox_env.layout.workspace,
                      sandbox_env.arm_endpoint)
    ghost = RegistrationResult(name=asset, requested_version="42", version="42", asset_id=ws.code_version_id(
        asset, "42"), content_hash="0" * 64, file_count=1, dedup=False, unique=False, code_uri=None)
    credential = ManagedIdentityCredential()
    container = BlobServiceClient(sandbox_env.blob_endpoint, credential=credential).get_container_client(POINTERS)
    with WorkspaceCodes(ws, credential) as codes, pytest.raises(ContractViolation) as err:
        publish_registration(container, ghost, ws, codes.version_exists)
    assert err.value.exit_code == 5
    assert err.value.code == "VersionNotInWorkspace"
