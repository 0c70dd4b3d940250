"""``code plan`` predicts registration from the hash lookup and the requested version, without the SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cicd_tools.codeassets.hashing import content_hash
from cicd_tools.codeassets.plan import plan_registration
from cicd_tools.codeassets.workspace import CodeVersionInfo, WorkspaceRef

WS = WorkspaceRef("sub", "rg", "ws", "https://arm.example.test")


def info(name: str, version: str, sha: str | None) -> CodeVersionInfo:
    return CodeVersionInfo(WS.code_version_id(name, version), name, version, None, sha, "202208", None)


class Workspace:
    def __init__(self, *versions: CodeVersionInfo) -> None:
        self.versions = list(versions)
        self.reads: list[str] = []

    def find_by_hash(self, name: str, sha: str) -> list[CodeVersionInfo]:
        self.reads.append("hash")
        return [v for v in self.versions if v.hash_sha256 == sha]  # regardless of name, as the service

    def get_version(self, name: str, version: str) -> CodeVersionInfo | None:
        self.reads.append(f"get {version}")
        return next((v for v in self.versions if v.name == name and v.version == version), None)


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    return folder


def test_known_content_plans_the_existing_version_and_no_upload(code: Path) -> None:
    sha = content_hash(code).sha256
    ws = Workspace(info("train", "7", sha))
    plan = plan_registration(ws, "train", code, "42")  # type: ignore[arg-type]
    assert (plan.dedup, plan.will_upload, plan.expected_version, plan.conflict) == (True, False, "7", False)
    assert any("will return 7" in w for w in plan.warnings())
    assert ws.reads == ["hash"]


def test_new_content_plans_the_requested_version(code: Path) -> None:
    plan = plan_registration(Workspace(), "train", code, "42")  # type: ignore[arg-type]
    assert (plan.dedup, plan.will_upload, plan.expected_version, plan.conflict) == (False, True, "42", False)
    assert plan.warnings() == []


def test_a_requested_version_holding_other_content_is_an_error_ahead(code: Path) -> None:
    plan = plan_registration(Workspace(info("train", "42", "f" * 64)), "train", code, "42")  # type: ignore[arg-type]
    assert plan.conflict
    assert any("Asset paths cannot be updated" in w for w in plan.warnings())
    assert plan.to_json()["conflict"] is True


def test_unique_plans_with_the_marker_so_a_rerun_of_the_build_is_recognised(code: Path) -> None:
    first = plan_registration(Workspace(), "train", code, "42", unique=True)  # type: ignore[arg-type]
    assert first.content_hash != content_hash(code).sha256
    ws = Workspace(info("train", "42", first.content_hash))
    again = plan_registration(ws, "train", code, "42", unique=True)  # type: ignore[arg-type]
    assert (again.dedup, again.expected_version) == (True, "42")


def test_content_held_by_another_name_plans_the_failure_and_the_fix(code: Path) -> None:
    sha = content_hash(code).sha256
    plan = plan_registration(Workspace(info("training-code", "5", sha)), "validation-code", code, "9")  # type: ignore[arg-type]
    assert (plan.name_mismatch, plan.expected_name, plan.expected_version) == (True, "training-code", "5")
    doc = plan.to_json()
    assert (doc["nameMismatch"], doc["existingName"], doc["expectedName"]) == (True, "training-code", "training-code")
    assert any("training-code:5" in w and "--name-marker" in w and "exit 5" in w for w in plan.warnings())


def test_name_marker_plans_a_new_upload_for_a_second_name_and_dedup_for_a_rerun(code: Path) -> None:
    train = plan_registration(Workspace(), "training-code", code, "1", name_marker=True)  # type: ignore[arg-type]
    validate = plan_registration(Workspace(), "validation-code", code, "1", name_marker=True)  # type: ignore[arg-type]
    assert len({train.content_hash, validate.content_hash, content_hash(code).sha256}) == 3
    ws = Workspace(info("training-code", "1", train.content_hash))
    again = plan_registration(ws, "training-code", code, "2", name_marker=True)  # type: ignore[arg-type]
    assert (again.dedup, again.name_mismatch, again.expected_version) == (True, False, "1")
    other = plan_registration(ws, "validation-code", code, "2", name_marker=True)  # type: ignore[arg-type]
    assert (other.dedup, other.will_upload, other.expected_version) == (False, True, "2")


def test_new_content_without_a_version_says_registration_needs_one(code: Path) -> None:
    plan = plan_registration(Workspace(), "train", code, None)  # type: ignore[arg-type]
    assert plan.needs_version and plan.expected_version is None
    assert any("needs --version" in w for w in plan.warnings())


PROBE = textwrap.dedent("""
    import re, sys
    import responses
    from azure.core.credentials import AccessToken
    import cicd_tools.credentials
    from cicd_tools.cli.main import main

    class Cred:  # a token is needed before the (mocked) GET; this keeps the probe offline
        def get_token(self, *scopes, **kwargs):
            return AccessToken("t", 9999999999)

    cicd_tools.credentials.build_credential = Cred
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile("https://arm.probe.test/.*/versions/1"), status=404)
        rsps.add(responses.GET, re.compile("https://arm.probe.test/.*/versions"), json=dict(value=[]))
        code = main(ARGV)
    sys.stderr.write("EXIT=%s AZURE_AI_ML_LOADED=%s" % (code, "azure.ai.ml" in sys.modules))
""")


@pytest.mark.parametrize("command", ["hash", "plan"])
def test_hash_and_plan_never_import_azure_ai_ml(command: str, code: Path) -> None:
    argv = ["code", "hash", str(code)] if command == "hash" else [
        "code", "plan", "--name", "train", "--path", str(code), "--version", "1",
        "--subscription-id", "s", "--resource-group", "r", "--workspace", "w",
        "--arm-endpoint", "https://arm.probe.test"]
    script = PROBE.replace("ARGV", repr(argv))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert "EXIT=0 AZURE_AI_ML_LOADED=False" in proc.stderr, proc.stderr
