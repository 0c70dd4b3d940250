"""`pointer write|rollback` against the sandbox: the writer refuses a version the workspace does not hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.runtime import Sandbox


def open_agent_rule(sb: Sandbox) -> None:
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": sb.agent_ip, "action": "Allow"}]})


def test_pointer_write_refuses_a_version_the_workspace_does_not_hold(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    open_agent_rule(sandbox_env)
    code = main(["--output", "json", "pointer", "write", "--asset", "training-code", "--version", "99"])
    captured = capsys.readouterr()
    assert code == 5, captured.err
    assert json.loads(captured.out)["code"] == "VersionNotInWorkspace"
    assert main(["pointer", "read", "--asset", "training-code"]) == 5  # nothing was published
    assert "PointerNotFound" in capsys.readouterr().err


def test_pointer_write_without_workspace_names_the_escape_hatch(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CICD_WORKSPACE")
    monkeypatch.chdir(tmp_path)  # no cicd-tools.toml here to name the workspace either
    asset_id = (
        f"/subscriptions/{sandbox_env.subscription_id}/resourceGroups/{sandbox_env.resource_group}"
        "/providers/Microsoft.MachineLearningServices/workspaces/other/codes/a/versions/1"
    )
    code = main(["pointer", "write", "--asset", "a", "--version", "1", "--asset-id", asset_id])
    err = capsys.readouterr().err
    assert code == 2
    assert "--workspace / CICD_WORKSPACE" in err and "--skip-workspace-check" in err
