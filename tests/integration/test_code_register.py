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

from cicd_tools.cli.main import main
from cicd_tools.codeassets.register import RegistrationResult
from cicd_tools.codeassets.workspace import WorkspaceCodes, WorkspaceRef
from cicd_tools.sandbox.layout import AGENT_IP
from cicd_tools.sandbox.runtime import Sandbox

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
    # The log is in the order answers finished; a proxied blob answer can be logged after the next request's,
    # so order by arrival (``started``), the order the SDK sent them in.
    log = sorted(sandbox_env.control.requests(), key=lambda r: float(r.get("started", 0.0)))
    seen = [(r["method"], r["path"].split(codes, 1)[1] if codes in r["path"] else r["service"])
            for r in log if r["service"] in ("arm", "blob") and (codes in r["path"] or r["service"] == "blob")]
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
    from cicd_tools.support.errors import ContractViolation

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


# --- asset name truth: one folder under two names -------------------------------------------------------------


def pointer_exists(sb: Sandbox, asset: str) -> bool:
    service = BlobServiceClient(sb.private_blob_endpoint, credential=ManagedIdentityCredential())
    return bool(service.get_blob_client(POINTERS, f"code-assets/{asset}/latest.json").exists())


def test_one_folder_under_a_second_name_exits_5_and_publishes_nothing_for_it(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_pointer_storage(sandbox_env)
    train, validate = f"training-code-{asset}", f"validation-code-{asset}"
    rc, first, _ = cli(capsys, "code", "register", "--name", train, "--path", "src/train", "--version", "1",
                       "--pointer")
    assert (rc, first["version"], first["returnedName"]) == (0, "1", train)
    rc, doc, err = cli(capsys, "code", "register", "--name", validate, "--path", "src/train", "--version", "2",
                       "--pointer", ci="azure-devops")
    assert rc == 5
    assert (doc["error"], doc["code"]) == ("AssetNameMismatch", "AssetNameMismatch")
    assert f"requested {validate}:2" in err and first["assetId"] in err  # both ids
    assert "--name-marker" in err
    assert "task.setvariable" not in err  # no CI output under either name
    assert not pointer_exists(sandbox_env, validate)
    assert read_pointer_doc(sandbox_env, train)["requestedVersion"] == "1"  # the other pointer is untouched


def test_name_marker_registers_one_folder_under_two_names_and_a_rerun_keeps_both_versions(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_pointer_storage(sandbox_env)
    train, validate = f"training-code-{asset}", f"validation-code-{asset}"
    argv = ["code", "register", "--name-marker", "--pointer", "--asset", f"{train}=src/train",
            "--asset", f"{validate}=src/train", "--version"]
    rc, first, _ = cli(capsys, *argv, "1")
    assert rc == 0
    assert [(d["returnedName"], d["version"], d["dedup"]) for d in first] == [(train, "1", False),
                                                                            (validate, "1", False)]
    for name, doc in zip((train, validate), first, strict=True):
        pointer = read_pointer_doc(sandbox_env, name)
        assert (pointer["assetName"], pointer["version"]) == (name, "1")
        assert pointer["assetId"] == doc["assetId"] and pointer["assetId"].endswith(f"/codes/{name}/versions/1")
    rc, again, _ = cli(capsys, *argv, "2")
    assert rc == 0
    assert [(d["returnedName"], d["version"], d["dedup"]) for d in again] == [(train, "1", True),
                                                                            (validate, "1", True)]
    assert not (repo / "src" / "train" / ".aml-code-asset-name").exists()


def test_with_a_name_scoped_hash_lookup_a_second_name_uploads_its_own_copy(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The behaviour an earlier stub assumed, kept as a sandbox switch: the toolkit must work under both.
    sandbox_env.control.set_code_hash_scope("name")
    assert register(capsys, f"training-code-{asset}", "1")[0] == 0
    rc, doc, _ = register(capsys, f"validation-code-{asset}", "1")
    assert (rc, doc["returnedName"], doc["version"], doc["dedup"]) == (0, f"validation-code-{asset}", "1", False)


def test_plan_predicts_the_name_mismatch_before_any_upload(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train, validate = f"training-code-{asset}", f"validation-code-{asset}"
    assert register(capsys, train, "1")[0] == 0
    rc, plan, _ = cli(capsys, "code", "plan", "--name", validate, "--path", "src/train", "--version", "2")
    assert (rc, plan["nameMismatch"], plan["expectedName"], plan["expectedVersion"]) == (0, True, train, "1")
    rc, marked, _ = cli(capsys, "code", "plan", "--name", validate, "--path", "src/train", "--version", "2",
                        "--name-marker")
    assert (marked["nameMismatch"], marked["willUpload"], marked["expectedVersion"]) == (False, True, "2")


# --- evidence survives a failing pointer step -----------------------------------------------------------------


def test_a_pointer_refused_by_the_firewall_keeps_the_registration_and_names_the_step_to_rerun(
    sandbox_env: Sandbox, repo: Path, asset: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    github_output = repo / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(github_output))
    result_file = repo / "out" / "code.json"
    # The pointer account denies by default and no rule is open for the agent: the pointer step gets a 403.
    rc, doc, err = cli(capsys, "code", "register", "--name", asset, "--path", "src/train", "--version", "4242",
                       "--pointer", "--result-file", str(result_file), ci="github")
    assert rc == 3
    assert (doc["version"], doc["pointer"]) == ("4242", None)
    assert doc["pointerError"]["error"] == "NetworkDenied"
    assert json.loads(result_file.read_text()) == doc
    outputs = github_output.read_text()
    assert "codeVersion<<" in outputs and "\n4242\n" in outputs and doc["assetId"] in outputs
    rerun = f"cicd-tools pointer write --asset {asset} --version 4242"
    assert rerun in err
    # The hint's command is real: once the firewall admits the agent, it publishes the registered version.
    open_pointer_storage(sandbox_env)
    hint = next(line for line in err.splitlines() if line.startswith("hint:"))
    argv = hint.split("cicd-tools ", 2)[-1].split()
    assert main(["--output", "json", *argv]) == 0
    capsys.readouterr()
    assert read_pointer_doc(sandbox_env, asset)["version"] == "4242"
