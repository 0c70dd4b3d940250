"""`adf deploy | diff | run` against the sandbox's Data Factory: the published factory runs with the local runner.

The real azure-mgmt-datafactory client, the real DefaultAzureCredential (the sandbox's MSI endpoint) and real
Azurite behind the blob front's firewall. The network rule under test (AZURE_FACTS.md §5): a WebActivity
reaches the firewalled pointer account only with ``connectVia`` inside ``typeProperties`` naming the managed
VNet IR and an Approved managed private endpoint; anything else leaves from the factory's public IP and gets
403 ``AuthorizationFailure``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.datafactory.store import df_state
from cicd_tools.sandbox.runtime import Sandbox

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"
POINTER_PIPELINE = "pl_read_pointer"


def publish_pointer(sb: Sandbox, version: str = "7") -> str:
    """latest.json for training-code, written by CI through the agent origin (its IP rule opened)."""
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": sb.agent_ip, "action": "Allow"}]})
    asset_id = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/mlw-sandbox/codes/training-code/versions/{version}")
    assert main(["pointer", "write", "--asset", "training-code", "--version", version, "--asset-id", asset_id,
                 "--skip-workspace-check"]) == 0
    return asset_id


def factory_copy(tmp_path: Path, **pipelines: dict[str, Any]) -> Path:
    root = tmp_path / "adf"
    shutil.copytree(REPO_ADF, root)
    for name, resource in pipelines.items():
        (root / "pipeline" / f"{name}.json").write_text(json.dumps({"name": name, **resource}), encoding="utf-8")
    return root


def misplaced_connect_via() -> dict[str, Any]:
    """pl_read_pointer with connectVia at the activity root, where ADF ignores it."""
    doc = json.loads((REPO_ADF / "pipeline" / f"{POINTER_PIPELINE}.json").read_text(encoding="utf-8"))
    read = doc["properties"]["activities"][0]
    read["connectVia"] = read["typeProperties"].pop("connectVia")
    return {"properties": doc["properties"]}


def slow_pipelines() -> dict[str, dict[str, Any]]:
    """A parent whose ExecutePipeline child waits ten minutes (cancellation must stop it)."""
    child = {"properties": {"activities": [
        {"name": "LongWait", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 600}}]}}
    parent = {"properties": {"activities": [
        {"name": "RunChild", "type": "ExecutePipeline", "typeProperties": {
            "pipeline": {"referenceName": "pl_slow_child", "type": "PipelineReference"}, "waitOnCompletion": True}}]}}
    return {"pl_slow_child": child, "pl_slow_parent": parent}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--output", "json", "adf", "run", *args])
    captured = capsys.readouterr()
    data = json.loads(captured.out) if captured.out.strip() else {}
    return code, data, captured.err


def test_deployed_factory_reads_the_pointer_through_the_private_endpoint(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    asset_id = publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s")
    assert code == 0, err
    assert data["status"] == "Succeeded" and data["factory"] == sandbox_env.layout.factory
    read = next(a for a in data["activities"] if a["activityName"] == "ReadPointer")
    assert read["output"]["version"] == "7" and read["output"]["assetId"] == asset_id
    assert read["output"]["effectiveIntegrationRuntime"].startswith("ManagedVnetIR")
    assert read["error"] is None and data["armCalls"] >= 3
    blob = [r for r in sandbox_env.control.requests("blob") if r["path"].endswith("training-code/latest.json")]
    assert blob[-1]["origin"] == "private-endpoint" and blob[-1]["principal"] == "adf-factory"
    assert f"adfRunId={data['runId']}" in err  # the plain CI dialect prints outputs on stderr


def test_connect_via_at_the_activity_root_is_refused_by_the_storage_firewall(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("CICD_SUMMARY_FILE", str(summary))
    publish_pointer(sandbox_env)
    root = factory_copy(tmp_path, **{POINTER_PIPELINE: misplaced_connect_via()})
    # issue 20 case 4: `adf lint` flags it (ADF010, an error), so deploy refuses it unless told otherwise
    assert main(["adf", "deploy", str(root)]) == 2
    assert "ADF010" in capsys.readouterr().err
    assert main(["adf", "deploy", str(root), "--allow-lint-errors"]) == 0
    capsys.readouterr()
    code = main(["adf", "run", "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s"])
    out = capsys.readouterr().out
    assert code == 4
    assert "error in ReadPointer" in out and "AuthorizationFailure" in out
    blob = [r for r in sandbox_env.control.requests("blob") if r["path"].endswith("training-code/latest.json")]
    assert (blob[-1]["origin"], blob[-1]["status"]) == ("adf-public", 403)
    text = summary.read_text(encoding="utf-8")
    assert "| pl_read_pointer | ReadPointer | WebActivity | Failed | 2108 " in text and "AuthorizationFailure" in text


def test_a_pending_private_endpoint_fails_the_read_like_adf(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    sandbox_env.control.set_private_endpoint_state("mpe-mlstorage-blob", "Pending")
    capsys.readouterr()
    code, data, _ = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s")
    assert code == 4
    read = next(a for a in data["activities"] if a["activityName"] == "ReadPointer")
    assert "AuthorizationFailure" in read["error"]["message"] and read["error"]["target"] == "ReadPointer"


def test_timeout_cancels_the_run_and_its_child_runs_and_exits_6(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = factory_copy(tmp_path, **slow_pipelines())
    assert main(["adf", "deploy", str(root)]) == 0
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", "pl_slow_parent", "--wait", "--timeout", "5s", "--poll", "1s")
    assert code == 6, err
    assert data["status"] == "Cancelled"
    assert [c["status"] for c in data["childRuns"]] == ["Cancelled"]
    assert data["childRuns"][0]["activities"][0]["status"] == "Cancelled"  # the in-flight Wait stopped


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_wait_cancels_the_run_and_exits_130(
    sandbox_env: Sandbox, tmp_path: Path, signum: signal.Signals
) -> None:
    root = factory_copy(tmp_path, **slow_pipelines())
    assert main(["adf", "deploy", str(root)]) == 0
    env = {**os.environ, "CICD_CI": "plain"}
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "adf", "run", "--pipeline", "pl_slow_parent",
                             "--wait", "--poll", "1s"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    run_id = ""
    deadline = time.monotonic() + 60
    while not run_id and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.startswith("output adfRunId="):
            run_id = line.strip().split("=", 1)[1]
    assert run_id, "the command never printed its run id"
    proc.send_signal(signum)
    rest = proc.communicate(timeout=90)[1]
    assert proc.returncode == 130, rest
    runs = df_state(sandbox_env).factories[sandbox_env.layout.factory.lower()].runs
    assert runs[run_id].status in ("Canceling", "Cancelled")  # the command sent the cancel before exiting
    wait_until(lambda: runs[run_id].status == "Cancelled", "the run to end Cancelled")
    assert all(runs[c].status == "Cancelled" for c in runs[run_id].children)


def test_throttled_status_polls_still_end_the_wait_and_the_calls_are_counted(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    sandbox_env.control.add_fault(service="arm", method="GET", path=r"/pipelineruns/[^/?]+\?", status=429,
                                  retry_after=1, count=3)
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s")
    assert code == 0, err
    assert [f.hits for f in sandbox_env.control.faults()] == [3]
    assert data["armCalls"] >= 3 + 3  # createRun, a status poll, the activity query, plus the three 429s


def test_diff_names_exactly_the_edited_pipeline_and_deploy_makes_it_identical(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = factory_copy(tmp_path)
    assert main(["adf", "deploy", str(root)]) == 0
    assert main(["adf", "diff", str(root)]) == 0
    doc = json.loads((root / "pipeline" / f"{POINTER_PIPELINE}.json").read_text(encoding="utf-8"))
    edited = copy.deepcopy(doc)
    edited["properties"]["activities"][0]["policy"]["retry"] = 1
    (root / "pipeline" / f"{POINTER_PIPELINE}.json").write_text(json.dumps(edited), encoding="utf-8")
    capsys.readouterr()
    assert main(["--output", "json", "adf", "diff", str(root)]) == 1
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert [(c["kind"], c["name"], c["action"]) for c in changes] == [("pipelines", POINTER_PIPELINE, "change")]
    assert changes[0]["differences"] == [
        {"path": "$.activities[0].policy.retry", "repo": 1, "published": 0}]
    assert main(["adf", "deploy", str(root)]) == 0
    assert main(["adf", "diff", str(root)]) == 0


def test_activity_run_queries_page_with_continuation_tokens(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    sandbox_env.control.set_run_query_page_size(1)
    capsys.readouterr()
    code, data, _ = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s")
    assert code == 0
    declared = json.loads((REPO_ADF / "pipeline" / f"{POINTER_PIPELINE}.json").read_text(encoding="utf-8"))
    top_level = [a["name"] for a in declared["properties"]["activities"]]  # each ran once, one per page
    assert [a["activityName"] for a in data["activities"]] == top_level


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["adf", "run", "--pipeline", "no_such_pipeline"], "not found"),
        (["adf", "run", "--pipeline", POINTER_PIPELINE, "--param", "nope=1"], "no parameter named 'nope'"),
        (["adf", "run", "--pipeline", POINTER_PIPELINE, "--param", "novalue"], "NAME=VALUE"),
        (["adf", "run", "--pipeline", POINTER_PIPELINE, "--timeout", "soon", "--wait"], "not a duration"),
        (["adf", "deploy", "does/not/exist"], "no such folder"),
        (["adf", "diff", "."], "not a factory folder"),
        (["adf", "deploy", str(REPO_ADF), "--global", "nosuch=1"], "no global parameter"),
        (["adf", "run", "--pipeline", POINTER_PIPELINE, "--factory", "adf-nosuch"], "adf-nosuch"),
        (["adf", "diff", str(REPO_ADF), "--resource-group", "rg-nosuch"], "rg-nosuch"),
    ],
)
def test_bad_input_gets_a_clear_usage_error(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_a_sandbox_that_is_down_is_an_azure_error_not_a_crash(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_ARM_ENDPOINT", "https://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["adf", "run", "--pipeline", POINTER_PIPELINE]) == 3
    assert "could not reach the management endpoint" in capsys.readouterr().err


def test_the_factory_resources_preflight_reads_have_the_services_shapes(sandbox_env: Sandbox) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.datafactory import DataFactoryManagementClient

    from cicd_tools.sandbox.identity.identity import SandboxCredential, principal_oid

    sb = sandbox_env
    client = DataFactoryManagementClient(SandboxCredential(), sb.subscription_id, base_url=sb.arm_endpoint,
                                         credential_scopes=[sb.arm_endpoint + "/.default"])
    rg, name = sb.resource_group, sb.layout.factory
    factory = client.factories.get(rg, name)
    assert factory.identity is not None and factory.identity.principal_id == principal_oid("adf-factory")
    (mpe,) = client.managed_private_endpoints.list_by_factory(rg, name, "default")
    assert mpe.properties.connection_state.status == "Approved" and mpe.properties.group_id == "blob"
    assert mpe.properties.private_link_resource_id == sb.layout.account_id(sb.storage_account)
    (runtime,) = client.integration_runtimes.list_by_factory(rg, name)
    assert runtime.name == "ManagedVnetIR" and runtime.properties.type == "Managed"
    new = client.managed_private_endpoints.create_or_update(rg, name, "default", "mpe-other", {"properties": {
        "privateLinkResourceId": sb.layout.account_id("mlwsandboxstore"), "groupId": "blob"}})
    assert new.properties.connection_state.status == "Pending"  # the storage owner has not approved it yet
    with pytest.raises(HttpResponseError) as refused:
        client.managed_private_endpoints.create_or_update(rg, name, "default", "mpe-other", {"properties": {
            "privateLinkResourceId": sb.layout.account_id(sb.storage_account), "groupId": "blob"}})
    assert refused.value.status_code == 400
    client.pipelines.create_or_update(rg, name, "typed", {"properties": {
        "parameters": {"n": {"type": "Int"}}, "activities": []}})
    with pytest.raises(HttpResponseError) as mistyped:
        client.pipelines.create_run(rg, name, "typed", parameters={"n": "many"})
    assert mistyped.value.status_code == 400 and "not of the declared type" in str(mistyped.value)
    run_id = client.pipelines.create_run(rg, name, "typed", parameters={"n": 3}).run_id
    with pytest.raises(HttpResponseError) as no_window:
        client.activity_runs.query_by_pipeline_run(rg, name, run_id, {"lastUpdatedAfter": "2026-01-01T00:00:00Z"})
    assert no_window.value.status_code == 400 and "lastUpdatedBefore" in str(no_window.value)
    runs = client.pipeline_runs.query_by_factory(rg, name, {
        "lastUpdatedAfter": "2026-01-01T00:00:00Z", "lastUpdatedBefore": "2099-01-01T00:00:00Z",
        "filters": [{"operand": "PipelineName", "operator": "Equals", "values": ["typed"]}]})
    assert [r.run_id for r in runs.value] == [run_id]
    assert runs.value[0].parameters == {"n": "3"}  # PipelineRun parameters are strings


def test_run_local_with_the_sandbox_environment_resolves_the_factorys_real_host_names(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_pointer(sandbox_env, "9")  # opens the agent's IP rule: run-local leaves from this machine
    capsys.readouterr()
    code = main(["--output", "json", "adf", "run-local", str(REPO_ADF / "pipeline" / f"{POINTER_PIPELINE}.json"),
                 "--factory", str(REPO_ADF)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    read = next(a for a in out["activityRuns"] if a["activityName"] == "ReadPointer")
    assert read["output"]["version"] == "9"
    blob = [r for r in sandbox_env.control.requests("blob") if r["path"].endswith("training-code/latest.json")]
    assert (blob[-1]["origin"], blob[-1]["principal"]) == ("agent", "ci-pipeline")


def wait_until(condition: Any, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_non_recursive_cancel_leaves_child_runs_going(sandbox_env: Sandbox, tmp_path: Path) -> None:
    from azure.mgmt.datafactory import DataFactoryManagementClient

    from cicd_tools.sandbox.identity.identity import SandboxCredential

    sb = sandbox_env
    assert main(["adf", "deploy", str(factory_copy(tmp_path, **slow_pipelines()))]) == 0
    client = DataFactoryManagementClient(SandboxCredential(), sb.subscription_id, base_url=sb.arm_endpoint,
                                         credential_scopes=[sb.arm_endpoint + "/.default"])
    rg, name = sb.resource_group, sb.layout.factory
    runs = df_state(sb).factories[name.lower()].runs
    parent = client.pipelines.create_run(rg, name, "pl_slow_parent").run_id
    wait_until(lambda: bool(runs[parent].children), "the child run to start")
    child = runs[parent].children[0]
    assert client.pipeline_runs.get(rg, name, child).invoked_by.as_dict()["pipelineRunId"] == parent
    client.pipeline_runs.cancel(rg, name, parent, is_recursive=False)
    assert client.pipeline_runs.get(rg, name, parent).status == "Canceling"
    assert client.pipeline_runs.get(rg, name, child).status == "InProgress"
    client.pipeline_runs.cancel(rg, name, child, is_recursive=True)
    wait_until(lambda: client.pipeline_runs.get(rg, name, parent).status == "Cancelled", "the parent to end")
    assert client.pipeline_runs.get(rg, name, child).status == "Cancelled"


def test_deploy_stops_a_running_trigger_around_changes_and_deletes_orphans_only_when_asked(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trigger = {"name": "nightly", "properties": {"type": "ScheduleTrigger", "runtimeState": "Started",
               "pipelines": [{"pipelineReference": {"referenceName": POINTER_PIPELINE, "type": "PipelineReference"}}],
               "typeProperties": {"recurrence": {"frequency": "Day", "interval": 1}}}}
    root = factory_copy(tmp_path)
    (root / "trigger").mkdir()
    (root / "trigger" / "nightly.json").write_text(json.dumps(trigger), encoding="utf-8")
    assert main(["adf", "deploy", str(root)]) == 0
    factory = df_state(sandbox_env).factories[sandbox_env.layout.factory.lower()]
    assert factory.resources[("triggers", "nightly")]["properties"]["runtimeState"] == "Started"
    path = root / "pipeline" / f"{POINTER_PIPELINE}.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"retry": 0', '"retry": 1'), encoding="utf-8")
    capsys.readouterr()
    assert main(["--output", "json", "adf", "deploy", str(root)]) == 0  # the sandbox refuses to touch a started one
    steps = [(s["action"], s["name"]) for s in json.loads(capsys.readouterr().out)["plan"]]
    assert steps == [("stop-trigger", "nightly"), ("put", POINTER_PIPELINE), ("start-trigger", "nightly")]
    (root / "trigger" / "nightly.json").unlink()
    assert main(["adf", "deploy", str(root)]) == 0
    assert ("triggers", "nightly") in factory.resources  # orphans stay unless asked
    assert main(["adf", "deploy", str(root), "--delete-orphans"]) == 0
    assert ("triggers", "nightly") not in factory.resources
    assert main(["adf", "diff", str(root)]) == 0


def test_deploying_a_pipeline_the_service_refuses_is_a_usage_error_naming_it(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ghost = [{"activity": "Ghost", "dependencyConditions": ["Succeeded"]}]
    broken = {"properties": {"activities": [
        {"name": "A", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 1}, "dependsOn": ghost}]}}
    root = factory_copy(tmp_path, pl_broken=broken)
    capsys.readouterr()
    # past the lint gate (`adf lint` flags the dangling dependency too): what the service itself refuses
    assert main(["adf", "deploy", str(root), "--allow-lint-errors"]) == 2
    err = capsys.readouterr().err
    assert "put pipelines/pl_broken" in err and "Ghost" in err


def test_the_factory_refuses_a_foreach_batch_count_over_50_at_deploy(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # ADF's maximum is 50 ("Integer (maximum 50)", control-flow-for-each-activity; MicrosoftDocs/azure-docs#58758):
    # the service refuses the pipeline instead of clamping it.
    wide = {"properties": {"activities": [{"name": "Loop", "type": "ForEach", "typeProperties": {
        "items": "@createArray(1)", "batchCount": 60,
        "activities": [{"name": "W", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 0}}]}}]}}
    root = factory_copy(tmp_path, pl_wide=wide)
    capsys.readouterr()
    assert main(["adf", "deploy", str(root), "--allow-lint-errors"]) == 2  # past ADF075: the service's refusal
    err = capsys.readouterr().err
    assert "put pipelines/pl_wide" in err and "batchCount must be between 1 and 50" in err and "60" in err


def test_create_run_refuses_a_published_foreach_batch_count_over_50(sandbox_env: Sandbox) -> None:
    # A pipeline published before the check (stored as is): createRun refuses it too, with 400 (same sources).
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.datafactory import DataFactoryManagementClient

    from cicd_tools.sandbox.datafactory.store import envelope
    from cicd_tools.sandbox.identity.identity import SandboxCredential

    sb = sandbox_env
    factory = df_state(sb).factories[sb.layout.factory.lower()]
    loop = {"name": "Loop", "type": "ForEach", "typeProperties": {"items": "@createArray(1)", "batchCount": 60,
                                                                   "activities": []}}
    factory.resources[("pipelines", "pl_wide")] = envelope(sb, factory.name, "pipelines", "pl_wide",
                                                           {"activities": [loop]})
    client = DataFactoryManagementClient(SandboxCredential(), sb.subscription_id, base_url=sb.arm_endpoint,
                                         credential_scopes=[sb.arm_endpoint + "/.default"])
    with pytest.raises(HttpResponseError) as info:
        client.pipelines.create_run(sb.resource_group, sb.layout.factory, "pl_wide")
    assert info.value.status_code == 400 and "batchCount must be between 1 and 50" in str(info.value)
    assert not factory.runs


def test_an_identity_without_a_role_on_the_factory_gets_exit_3_naming_the_role(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_env.control.remove_role("ci-pipeline", "Contributor")
    capsys.readouterr()
    assert main(["adf", "run", "--pipeline", POINTER_PIPELINE]) == 3
    err = capsys.readouterr().err
    assert "AuthorizationFailed" in err and "Data Factory Contributor" in err


# --- the factory's CheckContract refuses what `pointer read` refuses (issue 19, point 6) ----------------------------


def upload_raw_pointer(sb: Sandbox, body: bytes) -> None:
    """latest.json as a foreign tool would write it (no validation on the way)."""
    from cicd_tools.cli._clients import container_client
    from cicd_tools.pointer.model import pointer_blob_name
    from cicd_tools.settings.resolve import Settings

    sb.control.set_account_properties(network_acls={"ipRules": [{"value": sb.agent_ip, "action": "Allow"}]})
    container_client(Settings.from_env()).upload_blob(pointer_blob_name("training-code"), body, overwrite=True)


def sandbox_doc(sb: Sandbox, **changes: Any) -> dict[str, Any]:
    asset_id = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/mlw-sandbox/codes/training-code/versions/7")
    return {"schemaVersion": 1, "assetName": "training-code", "version": "7", "assetId": asset_id} | changes


BROKEN_POINTERS = {
    "number version": lambda sb: json.dumps(sandbox_doc(sb, version=7,
                                                        assetId=sandbox_doc(sb)["assetId"])).encode(),
    "utf-8 bom": lambda sb: b"\xef\xbb\xbf" + json.dumps(sandbox_doc(sb)).encode(),
    "foreign workspace": lambda sb: json.dumps(sandbox_doc(
        sb, assetId=sandbox_doc(sb)["assetId"].replace("/workspaces/mlw-sandbox/", "/workspaces/mlw-other/"))).encode(),
    "over 64 KiB": lambda sb: json.dumps(sandbox_doc(sb, padding="x" * (64 * 1024))).encode(),
    "over 4 MB": lambda sb: json.dumps(sandbox_doc(sb, padding="x" * (5 * 1024 * 1024))).encode(),
}


@pytest.mark.parametrize("case", sorted(BROKEN_POINTERS))
def test_the_factory_refuses_a_pointer_that_pointer_read_refuses(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    from cicd_tools.pointer.model import parse_pointer
    from cicd_tools.support.errors import ContractViolation

    body = BROKEN_POINTERS[case](sandbox_env)
    ws = sandbox_doc(sandbox_env)["assetId"].split("/codes/")[0]
    with pytest.raises(ContractViolation):  # the reader's verdict, the same validator as `pointer read`
        parse_pointer(body, source="latest.json", asset="training-code", workspace_id=ws)
    upload_raw_pointer(sandbox_env, body)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s", "--timeout", "90s")
    assert code == 4, err  # failed, not timed out (6): the wait ends when the run does
    assert data["status"] == "Failed"
    failed = {a["activityName"]: a for a in data["activities"] if a["status"] == "Failed"}
    assert "PointerContractViolated" in failed or "CheckContract" in failed, failed


def test_a_web_activity_answer_over_4_mb_fails_the_activity_and_the_wait_ends_with_the_run(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ADF caps a WebActivity's output at 4 MB; the sandbox factory never loads the whole 5 MB answer."""
    doc = json.loads((REPO_ADF / "pipeline" / f"{POINTER_PIPELINE}.json").read_text(encoding="utf-8"))
    read = doc["properties"]["activities"][0]
    del read["typeProperties"]["headers"]["x-ms-range"]  # the whole blob, as the pipeline read it before
    upload_raw_pointer(sandbox_env, json.dumps(sandbox_doc(sandbox_env, padding="x" * (5 * 1024 * 1024))).encode())
    root = factory_copy(tmp_path, **{POINTER_PIPELINE: {"properties": doc["properties"]}})
    assert main(["adf", "deploy", str(root)]) == 0
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s", "--timeout", "90s")
    assert code == 4, err  # the run failed and the wait says so (6 would be a timeout)
    failed = next(a for a in data["activities"] if a["activityName"] == "ReadPointer")
    assert failed["status"] == "Failed" and "4 MB" in failed["error"]["message"]


def test_the_factory_accepts_the_pointer_that_pointer_write_publishes(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    upload_raw_pointer(sandbox_env, json.dumps(sandbox_doc(sandbox_env)).encode())
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    capsys.readouterr()
    code, data, err = run_json(capsys, "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s")
    assert code == 0, err
    assert [a["activityName"] for a in data["activities"] if a["status"] == "Succeeded"][:2] == [
        "ReadPointer", "ReadFirstByte"]


def test_the_published_pipelines_parameters_decide_whether_flow_pins_its_run(
    sandbox_env: Sandbox, tmp_path: Path
) -> None:
    """``flow`` passes ``expectedCodeIds`` only to a published pipeline that declares it (older factories run as
    before); what counts is the factory's copy, read through the real SDK, not the local folder."""
    from cicd_tools.adf.client import ArmCalls, FactoryRef
    from cicd_tools.adf.operations import factory_api_for, pipeline_parameters
    from cicd_tools.credentials import build_credential

    sb = sandbox_env
    pinned = json.loads((REPO_ADF / "pipeline" / "pl_train_and_validate.json").read_text())
    pinned["name"] = "pl_pinned"
    pinned["properties"]["parameters"]["expectedCodeIds"] = {"type": "object", "defaultValue": {}}
    assert main(["adf", "deploy", str(factory_copy(tmp_path, pl_pinned=pinned))]) == 0
    ref = FactoryRef(sb.subscription_id, sb.resource_group, sb.layout.factory)
    api = factory_api_for(build_credential(), ref, sb.arm_endpoint)
    declared = set(json.loads((REPO_ADF / "pipeline" / "pl_train_and_validate.json").read_text())
                   ["properties"]["parameters"])
    assert pipeline_parameters(api, ArmCalls(), ref, "pl_train_and_validate") == declared
    assert pipeline_parameters(api, ArmCalls(), ref, "pl_pinned") == {*declared, "expectedCodeIds"}
    assert pipeline_parameters(api, ArmCalls(), ref, "pl_not_published") is None
