"""`cicd-tools preflight` against the sandbox: the real azure-core ARM pipeline and azure-identity credential.

Two parts of the chain belong to other providers that are being built beside this one: the factory
(sandbox/datafactory.py) and the Kubernetes compute (`computes/{name}` in sandbox/aml.py). Where the
sandbox does not serve them yet, these tests skip the factory link and expect the compute link to say
the compute does not exist; every other link is judged in full.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.runtime import ROUTE_MODULES, Sandbox
from cicd_tools.sandbox.world.chain import STREAM_AUTH, job_storage_access

LINKS = ("ci-identity", "factory", "storage", "compute", "aks", "rbac-freshness")
SERVED = [r.pattern for name in ROUTE_MODULES for r in importlib.import_module(name).routes]
COMPUTE_SERVED = any("/computes/" in p for p in SERVED)
FACTORY_SERVED = any("factories/" in p for p in SERVED)


def run(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    skip = () if FACTORY_SERVED else ("--skip", "factory")
    code = main(["--output", "json", "--ci", "plain", "preflight", "--adf-dir", "adf", *skip, *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {link["link"]: link["status"] for link in report["links"]}


def expected_default() -> dict[str, str]:
    want = dict.fromkeys(LINKS, "ok")
    if not FACTORY_SERVED:
        del want["factory"]
    if not COMPUTE_SERVED:
        want["compute"] = "fail"
    return want


def test_default_sandbox_passes_every_link(sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(capsys)
    assert statuses(report) == expected_default()
    if COMPUTE_SERVED:  # the factory link is skipped while the sandbox does not serve factories
        assert code == 0 and report["rootCause"] is None
    else:
        compute = next(c for c in report["links"] if c["link"] == "compute")["checks"]
        assert any(c["id"] == "compute" and "does not exist" in c["evidence"] for c in compute)
    assert report["principal"]["name"] == sandbox_env.layout.ci_principal
    assert job_storage_access(sandbox_env, sandbox_env.layout.compute) is None


def test_preflight_only_reads(sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.control.clear_requests()
    run(capsys)
    seen = sandbox_env.state.requests()
    assert len([r for r in seen if r["service"] == "arm"]) >= 10  # it did read the chain
    assert {r["method"] for r in seen} == {"GET"}, [r for r in seen if r["method"] != "GET"]


NEEDS_FACTORY = pytest.mark.skipif(not FACTORY_SERVED, reason="the sandbox does not serve factories yet")


@pytest.mark.parametrize(("link", "status", "check", "fix"), [
    ("ci-identity", "fail", "ci-blob-data", 'Storage Blob Data Contributor" --scope'),
    pytest.param("factory", "fail", "factory-blob-read", 'Storage Blob Data Reader" --scope', marks=NEEDS_FACTORY),
    ("storage", "fail", "pointer-account", "--public-network-access Enabled"),
    ("compute", "fail", "compute", "az ml compute attach"),
    ("aks", "fail", "aks-extension-identity", "identityType=UserAssigned"),
    ("rbac-freshness", "warn", "rbac-fresh-assignment", "Wait a few minutes"),
])
def test_each_switch_flips_exactly_its_link(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], link: str, status: str, check: str, fix: str
) -> None:
    sandbox_env.control.break_link(link)
    code, report = run(capsys)
    want = expected_default() | {link: status}
    assert statuses(report) == want
    checks = {c["id"]: c for item in report["links"] if item["link"] == link for c in item["checks"]}
    assert checks[check]["status"] == status
    assert fix in checks[check]["fix"]
    if status == "fail":
        assert code == 2
        if COMPUTE_SERVED or link == "compute":
            assert report["rootCause"]["id"] == check


@NEEDS_FACTORY
def test_a_pending_managed_private_endpoint_fails_the_factory_link(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_env.control.set_private_endpoint_state("mpe-mlstorage-blob", "Pending")  # type: ignore[attr-defined]
    code, report = run(capsys)
    assert code == 2 and statuses(report) == expected_default() | {"factory": "fail"}
    assert report["rootCause"]["id"] == "factory-private-endpoint"
    assert "private-endpoint-connection approve" in report["rootCause"]["fix"]


def test_aks_identity_gap_names_the_cluster_flags_first_and_the_job_fails(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_env.control.apply_scenario("aks-identity-gap")
    code, report = run(capsys)
    assert code == 2
    aks_checks = {c["id"]: c["status"] for link in report["links"] if link["link"] == "aks" for c in link["checks"]}
    assert aks_checks["aks-workload-identity"] == "fail"
    assert aks_checks["aks-extension-identity"] == "fail"
    assert statuses(report)["storage"] == "ok"  # identity-based datastores: shared key off is fine
    if COMPUTE_SERVED:
        assert report["rootCause"]["id"] == "aks-workload-identity"
    assert "enable-workload-identity" in aks_fix(report)
    denied = job_storage_access(sandbox_env, sandbox_env.layout.compute)
    assert denied is not None and denied.code == STREAM_AUTH


def aks_fix(report: dict[str, Any]) -> str:
    return str(next(link for link in report["links"] if link["link"] == "aks")["fix"])


def test_key_datastores_is_named_as_root_cause_and_the_job_fails(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_env.control.apply_scenario("key-datastores")
    code, report = run(capsys)
    assert code == 2
    assert report["rootCause"]["id"] == "workspace-datastore-auth"
    assert "cannot be changed after the workspace is created" in report["rootCause"]["evidence"]
    assert "systemDatastoresAuthMode 'identity'" in report["rootCause"]["fix"]
    assert statuses(report)["aks"] == "ok"  # the AKS side is healthy: RBAC and federation are not the cause
    denied = job_storage_access(sandbox_env, sandbox_env.layout.compute)
    assert denied is not None and denied.code == STREAM_AUTH and "Key based authentication" in denied.message


def test_federated_credential_with_the_wrong_issuer_fails_the_aks_link(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = sandbox_env.control.topology()
    wrong = [dict(c, issuer=c["issuer"].rstrip("/")) for c in topo["federatedCredentials"]]  # a missing slash
    sandbox_env.control.set_topology(federatedCredentials=wrong)
    _, report = run(capsys)
    checks = {c["id"]: c for link in report["links"] if link["link"] == "aks" for c in link["checks"]}
    assert checks["aks-federated-credentials"]["status"] == "fail"
    assert "az identity federated-credential create" in checks["aks-federated-credentials"]["fix"]
    assert job_storage_access(sandbox_env, sandbox_env.layout.compute) is not None


def test_role_assignment_created_minutes_ago_warns_with_its_creation_time(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = sandbox_env.layout
    scope = layout.account_id(layout.storage_account)
    sandbox_env.control.remove_role(layout.ci_principal, "Storage Blob Data Contributor", scope)
    sandbox_env.control.assign_role(layout.ci_principal, "Storage Blob Data Contributor", scope,
                                    created_on="2026-01-05T09:00:00Z")
    _, report = run(capsys)
    assert statuses(report)["rbac-freshness"] == "ok"
    sandbox_env.control.remove_role(layout.ci_principal, "Storage Blob Data Contributor", scope)
    sandbox_env.control.assign_role(layout.ci_principal, "Storage Blob Data Contributor", scope)
    _, report = run(capsys, "--fresh-minutes", "10")
    fresh = next(link for link in report["links"] if link["link"] == "rbac-freshness")
    assert fresh["status"] == "warn"
    assert "may not have propagated yet" in fresh["checks"][0]["evidence"]
    assert re.search(r"created \d{4}-\d{2}-\d{2}T", fresh["checks"][0]["evidence"])


def test_sandbox_up_with_a_scenario_then_preflight_as_a_subprocess(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cicd_tools.cli", *args], capture_output=True, text=True,
                              timeout=120, env=env)

    try:
        up = cli("--output", "json", "sandbox", "up", "--state-dir", str(state), "--scenario", "key-datastores")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["scenario"] == "key-datastores"
        env = dict(os.environ, **json.loads(up.stdout)["env"])
        started = time.monotonic()
        checked = cli("preflight", "--adf-dir", "adf", *(() if FACTORY_SERVED else ("--skip", "factory")), env=env)
        print(f"preflight wall time (subprocess, scenario key-datastores): {time.monotonic() - started:.2f} s")
        assert checked.returncode == 2, checked.stderr
        first = checked.stdout.splitlines()[1]
        assert first.startswith("root cause: [storage] workspace-datastore-auth"), checked.stdout
    finally:
        cli("sandbox", "down", "--state-dir", str(state))


def test_names_that_do_not_exist_fail_their_links_with_exit_2_not_a_crash(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(capsys, "--workspace", "no-such-ws", "--aks-cluster", "no-such-aks", "--account", "nosuchacct")
    assert code == 2
    checks = {c["id"]: c for link in report["links"] for c in link["checks"]}
    assert "workspace no-such-ws does not exist" in checks["workspace"]["evidence"]
    assert "storage account nosuchacct does not exist" in checks["pointer-account"]["evidence"]
    assert "managedClusters/no-such-aks does not exist" in checks["aks-cluster"]["evidence"]


JOBS_SERVED = (any("MachineLearningServices" in p and "/jobs/" in p for p in SERVED)
               and importlib.util.find_spec("tests.integration.test_aml_jobs_sdk") is not None)


@pytest.mark.skipif(not JOBS_SERVED, reason="the sandbox does not run Azure ML jobs yet")
@pytest.mark.parametrize("scenario", ["aks-identity-gap", "key-datastores"])
def test_in_each_scenario_the_aml_job_on_aks_fails_like_the_field(sandbox_env: Sandbox, scenario: str) -> None:
    from azure.identity import ManagedIdentityCredential

    from cicd_tools.codeassets.sdk import build_ml_client, create_code
    from cicd_tools.codeassets.workspace import WorkspaceRef

    jobs = importlib.import_module("tests.integration.test_aml_jobs_sdk")  # its REST job helpers
    ws = WorkspaceRef(sandbox_env.subscription_id, sandbox_env.resource_group, sandbox_env.layout.workspace,
                      sandbox_env.arm_endpoint)
    ml = build_ml_client(ManagedIdentityCredential(), ws)
    code = create_code(ml, "training-code", "1", Path(__file__).resolve().parents[2] / "aml" / "src" / "train")
    sandbox_env.control.apply_scenario(scenario)
    name = f"{scenario}-{os.getpid()}"
    assert jobs.put_job(sandbox_env, name, jobs.rest_body(sandbox_env, code.id)).status_code == 201
    job = jobs.wait_terminal(ml, name)
    assert jobs.status(job) == "Failed"
    assert jobs.run_details(sandbox_env, name)["error"]["error"]["code"] == STREAM_AUTH  # where Azure ML puts it


def test_names_come_from_the_flow_config_file_when_no_flag_or_variable_gives_them(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = Path(__file__).resolve().parents[2]
    adf = str(repo / "adf")
    for var in ("CICD_RESOURCE_GROUP", "CICD_STORAGE_ACCOUNT", "CICD_WORKSPACE", "CICD_FACTORY"):
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no cicd-tools.toml here
    code, _ = main(["--ci", "plain", "preflight", "--adf-dir", adf]), capsys.readouterr()
    assert code == 2  # nothing names the resource group, account or workspace
    code, report = run(capsys, "--adf-dir", adf, "--config", str(repo / "cicd-tools.toml"))
    assert code == 0, report
    assert statuses(report) == expected_default()
    monkeypatch.chdir(repo)  # ./cicd-tools.toml is read without --config, as `flow` and the other commands read it
    code, report = run(capsys)
    assert code == 0, report
    assert statuses(report) == expected_default()


def test_the_preflight_operation_runs_without_the_cli(sandbox_env: Sandbox) -> None:
    from cicd_tools.preflight.context import Targets
    from cicd_tools.preflight.operations import PreflightRequest, run_checks

    env = os.environ
    targets = Targets(
        subscription_id=env["CICD_SUBSCRIPTION_ID"], resource_group=env["CICD_RESOURCE_GROUP"],
        storage_account=env["CICD_STORAGE_ACCOUNT"], container="ml-globals", workspace=env["CICD_WORKSPACE"],
        compute=env["CICD_COMPUTE"], factory=env["CICD_FACTORY"] if FACTORY_SERVED else None, aks_cluster=None,
        adf_dir=Path(__file__).resolve().parents[2] / "adf", manage_firewall=True, fresh_minutes=30.0)
    skip = () if FACTORY_SERVED else ("factory",)
    result = run_checks(PreflightRequest(targets, env["CICD_ARM_ENDPOINT"], skip))
    assert not result.failed and result.elapsed > 0
    assert statuses(result.report.to_dict()) == expected_default()
