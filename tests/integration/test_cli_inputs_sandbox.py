"""Bad input against the sandbox ends with exit 2 and leaves no rule behind (reproduced as exit 70 before)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.runtime import Sandbox
from tests.integration.test_firewall_sandbox import PERMANENT, lease_tags, prepare, rules


def test_a_century_long_ttl_is_refused_before_the_account_changes(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(sandbox_env)
    code = main(["--ci", "plain", "firewall", "open", "--ttl", "99999999d", "--no-probe",
                 "--state-file", str(tmp_path / "state.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--ttl" in err
    assert rules(sandbox_env) == [PERMANENT] and lease_tags(sandbox_env) == {}


def _open_then_forget_the_lease_id(sb: Sandbox, state: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["--ci", "plain", "--output", "json", "firewall", "open", "--ttl", "20m", "--no-probe",
                 "--state-file", str(state)]) == 0
    lease_id = str(json.loads(capsys.readouterr().out)["leaseId"])
    doc = json.loads(state.read_text())
    for entry in doc["entries"].values():
        del entry["leaseId"]  # hand-edited, or written by another tool
    state.write_text(json.dumps(doc))
    assert sb.agent_ip in rules(sb)
    return lease_id


def test_close_with_a_state_entry_without_lease_id_names_the_command_that_closes_the_rule(
    sandbox_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox_env
    prepare(sb)
    state = tmp_path / "state.json"
    lease_id = _open_then_forget_the_lease_id(sb, state, capsys)

    code = main(["--ci", "plain", "firewall", "close", "--state-file", str(state)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert lease_id in err and "without a leaseId" in err
    command = re.search(r"Close it with: (cicd-tools firewall close [^|()]+?)(?: \(or|$| \|)", err, re.M)
    assert command is not None, err

    # The hint's command, as the user would paste it, closes the rule.
    assert main(["--ci", "plain", *shlex.split(command.group(1))[1:]]) == 0, capsys.readouterr().err
    assert rules(sb) == [PERMANENT] and lease_tags(sb) == {}


def test_close_in_ci_finds_the_lease_of_an_entry_without_lease_id_by_the_run_id(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox_env
    prepare(sb)
    monkeypatch.setenv("BUILD_BUILDID", "4242")
    state = tmp_path / "state.json"
    assert _open_then_forget_the_lease_id(sb, state, capsys) == "ado-4242"

    assert main(["--ci", "plain", "firewall", "close", "--state-file", str(state)]) == 0, capsys.readouterr().err
    assert rules(sb) == [PERMANENT] and lease_tags(sb) == {}
