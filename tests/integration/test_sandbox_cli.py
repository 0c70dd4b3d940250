"""`cicd-tools sandbox up|env|status|down` as subprocesses: idempotent start, usable env, nothing left behind."""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import AzurePipelinesCredential, ManagedIdentityCredential
from azure.mgmt.storage import StorageManagementClient

from cicd_tools.sandbox.identity.identity import decode_token, signing_key
from cicd_tools.sandbox.layout import SandboxLayout, account_key
from cicd_tools.sandbox.process import pid_alive
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.storage.resign import delegation_key


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cicd_tools.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "sandbox-state"
    try:
        yield folder
    finally:
        cli("sandbox", "down", "--state-dir", str(folder))  # never leave a sandbox behind a failed test


def test_up_is_idempotent_env_evaluates_and_down_leaves_no_process(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cli("--output", "json", "sandbox", "up", "--state-dir", str(state_dir), "--propagation-delay", "0.2")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["status"] == "started"
    runtime_pid, azurite_pid = started["pid"], started["azurite_pid"]
    assert pid_alive(runtime_pid) and pid_alive(azurite_pid)

    again = cli("--output", "json", "sandbox", "up", "--state-dir", str(state_dir))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "already_running"
    assert json.loads(again.stdout)["pid"] == runtime_pid

    printed = cli("sandbox", "env", "--state-dir", str(state_dir))
    assert printed.returncode == 0, printed.stderr
    exported = dict(shlex.split(line)[1].split("=", 1) for line in printed.stdout.splitlines())
    assert exported["CICD_SANDBOX_STATE_DIR"] == str(state_dir.resolve())
    assert {"REQUESTS_CA_BUNDLE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "CICD_ARM_ENDPOINT", "CICD_BLOB_ENDPOINT",
            "CICD_IP_ECHO_URLS", "CICD_SANDBOX_CONTROL_URL", "CICD_SUBSCRIPTION_ID",
            "CICD_SANDBOX_SECRET"} <= set(exported)
    # The secret is on disk only in the owner-only state file, in a folder only the owner can enter.
    assert stat.S_IMODE((state_dir / "sandbox.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700

    # What a shell gets from eval is what the toolkit reads: the real SDKs reach the sandbox with it.
    evaluated = subprocess.run(
        ["bash", "-c", f'eval "$({shlex.quote(sys.executable)} -m cicd_tools.cli.main sandbox env --state-dir '
                       f'{shlex.quote(str(state_dir))})" && printf %s "$CICD_BLOB_ENDPOINT"'],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert evaluated.stdout == exported["CICD_BLOB_ENDPOINT"]
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    arm = exported["CICD_ARM_ENDPOINT"]
    client = StorageManagementClient(ManagedIdentityCredential(), exported["CICD_SUBSCRIPTION_ID"], base_url=arm,
                                     credential_scopes=[arm + "/.default"])
    account = client.storage_accounts.get_properties(exported["CICD_RESOURCE_GROUP"],
                                                     exported["CICD_STORAGE_ACCOUNT"])
    assert account.network_rule_set.default_action == "Deny"

    # The CI credentials from a shell: the az stand-in answers on PATH; the Azure DevOps variables work as printed.
    az = subprocess.run(
        ["bash", "-c", f'eval "$({shlex.quote(sys.executable)} -m cicd_tools.cli.main sandbox env --state-dir '
                       f'{shlex.quote(str(state_dir))} --credential azure-cli)" && '
                       'az account get-access-token --resource https://storage.azure.com --output json'],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert az.returncode == 0, az.stderr
    assert json.loads(az.stdout)["subscription"] == exported["CICD_SUBSCRIPTION_ID"]
    pipelines = cli("sandbox", "env", "--state-dir", str(state_dir), "--credential", "azure-pipelines")
    unset, *exports = pipelines.stdout.splitlines()
    assert unset.startswith("unset ") and "IDENTITY_ENDPOINT" in unset.split()
    ado = dict(shlex.split(line)[1].split("=", 1) for line in exports)
    for name in unset.split()[1:]:
        monkeypatch.delenv(name, raising=False)
    for name, value in ado.items():
        monkeypatch.setenv(name, value)
    credential = AzurePipelinesCredential(
        tenant_id=ado["AZURESUBSCRIPTION_TENANT_ID"], client_id=ado["AZURESUBSCRIPTION_CLIENT_ID"],
        service_connection_id=ado["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
        system_access_token=ado["SYSTEM_ACCESSTOKEN"])
    assert decode_token(credential.get_token(arm + "/.default").token)["name"] == "ci-pipeline"

    status = cli("--output", "json", "sandbox", "status", "--state-dir", str(state_dir))
    assert json.loads(status.stdout)["running"] is True
    human = cli("sandbox", "status", "--state-dir", str(state_dir))

    # Secrets scan: the sandbox secret, its signing key, Azurite's account keys and its user delegation key appear
    # in no output but `sandbox env`'s, nor in the sandbox's or Azurite's log.
    secret = exported["CICD_SANDBOX_SECRET"]
    key = signing_key(secret)
    accounts = CloudState(SandboxLayout()).account_names()
    assert len(accounts) >= 2  # the pointer account and the workspace's
    forms = (secret, key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode().rstrip("="),
             delegation_key(secret), *(account_key(name, secret) for name in accounts))
    outputs = {"up": first.stdout + first.stderr, "up again": again.stdout + again.stderr,
               "status --json": status.stdout + status.stderr, "status": human.stdout + human.stderr,
               "az": az.stdout + az.stderr, "env --credential azure-pipelines": pipelines.stdout.replace(
                   f"export CICD_SANDBOX_SECRET={shlex.quote(secret)}", "") + pipelines.stderr,
               "sandbox.log": (state_dir / "sandbox.log").read_text(errors="replace"),
               "azurite.log": (state_dir / "azurite" / "azurite.log").read_text(errors="replace")}
    leaks = {name: [i for i, form in enumerate(forms) if form in text] for name, text in outputs.items()}
    assert {name: found for name, found in leaks.items() if found} == {}

    stopped = cli("sandbox", "down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_alive(runtime_pid)
    assert not pid_alive(azurite_pid)
    assert not (state_dir / "sandbox.json").exists()
    assert json.loads(cli("--output", "json", "sandbox", "status", "--state-dir", str(state_dir)).stdout)[
        "running"] is False


def test_env_without_a_running_sandbox_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("sandbox", "env", "--state-dir", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "no sandbox is running" in result.stderr


def test_up_after_a_killed_runtime_starts_afresh_and_kills_the_orphaned_azurite(state_dir: Path) -> None:
    first = cli("--output", "json", "sandbox", "up", "--state-dir", str(state_dir))
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    os.killpg(info["pid"], 9)  # the runtime dies without cleaning up: Azurite is orphaned
    second = cli("--output", "json", "sandbox", "up", "--state-dir", str(state_dir))
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"] == "started"
    assert not pid_alive(info["azurite_pid"])


def test_up_without_azurite_is_one_clear_error_and_starts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # What a pip user meets: no node_modules near the installed package, none in the current folder, none on PATH.
    from cicd_tools.cli.main import main
    from cicd_tools.sandbox.storage import azurite

    monkeypatch.setattr(azurite, "__file__", str(tmp_path / "site-packages" / "a" / "b" / "c" / "azurite.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("CICD_AZURITE_BIN", raising=False)
    code = main(["-o", "json", "sandbox", "up", "--state-dir", str(tmp_path / "state")])
    out = capsys.readouterr()
    assert code == 2
    doc = json.loads(out.out)
    assert "Azurite is not installed" in doc["message"]
    assert "npm install -g azurite@3.35.0" in doc["hint"] and "CICD_AZURITE_BIN" in doc["hint"]
    assert "Traceback" not in out.err
    assert not (tmp_path / "state" / "sandbox.json").exists()


def test_a_wrong_azurite_bin_is_named(state_dir: Path) -> None:
    proc = cli("sandbox", "up", "--state-dir", str(state_dir),
               env={**os.environ, "CICD_AZURITE_BIN": str(state_dir / "nope" / "azurite-blob")})
    assert proc.returncode == 2, proc.stderr
    assert "CICD_AZURITE_BIN=" in proc.stderr and "is not a file" in proc.stderr and "Traceback" not in proc.stderr
