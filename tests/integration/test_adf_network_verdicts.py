"""The sandbox factory's network verdicts for a WebActivity, decided from the factory's actual runtimes.

Sources (docs/sandbox.md, "Data Factory network verdicts"; AZURE_FACTS.md §5, §9):

* Without ``connectVia`` inside ``typeProperties`` the activity runs on the factory's AutoResolveIntegrationRuntime;
  a factory created with a managed virtual network has that runtime *in* the managed VNet (an Azure IR with a
  ``managedVirtualNetwork`` reference), so the call leaves through the managed private endpoint.
* ``effectiveIntegrationRuntime`` reads ``"{runtime} ({region})"`` (spec example ActivityRuns_QueryByPipelineRun.json:
  ``"DefaultIntegrationRuntime (East US)"``); an AutoResolve location runs in the factory's region
  (concepts-integration-runtime, "Azure IR location").
* Storage's trusted-services list names ``Microsoft.DataFactory/factories`` ("through the Data Factory runtime");
  whether that admits a WebActivity's MSI call over the public path is not documented: the field report (403) is the
  default and ``set_factory_trusted_bypass(True)`` the switch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli.main import main
from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.sandbox.storage.trusted import DATA_FACTORY, is_admitted

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"
POINTER_PIPELINE = "pl_read_pointer"
REGION = "West Europe"  # the sandbox factory's location, westeurope


def publish_pointer(sb: Sandbox, version: str = "7") -> None:
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": sb.agent_ip, "action": "Allow"}]})
    asset_id = (f"/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/mlw-sandbox/codes/training-code/versions/{version}")
    assert main(["pointer", "write", "--asset", "training-code", "--version", version, "--asset-id", asset_id,
                 "--skip-workspace-check"]) == 0


def factory_without_connect_via(tmp_path: Path, *, auto_resolve_in_vnet: bool) -> Path:
    """The shipped factory with the reads' connectVia removed; optionally its AutoResolve runtime in the VNet."""
    root = tmp_path / "adf"
    shutil.copytree(REPO_ADF, root)
    path = root / "pipeline" / f"{POINTER_PIPELINE}.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    for activity in doc["properties"]["activities"]:
        activity.get("typeProperties", {}).pop("connectVia", None)
    path.write_text(json.dumps(doc), encoding="utf-8")
    if auto_resolve_in_vnet:  # what a factory created with a managed virtual network holds in Git
        runtime = json.loads((root / "integrationRuntime" / "ManagedVnetIR.json").read_text(encoding="utf-8"))
        runtime["name"] = "AutoResolveIntegrationRuntime"
        (root / "integrationRuntime" / "AutoResolveIntegrationRuntime.json").write_text(json.dumps(runtime))
    return root


def read_activity(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["--output", "json", "adf", "run", "--pipeline", POINTER_PIPELINE, "--wait", "--poll", "1s"])
    data = json.loads(capsys.readouterr().out)
    return code, next(a for a in data["activities"] if a["activityName"] == "ReadPointer")


def pointer_reads(sb: Sandbox) -> list[dict[str, Any]]:
    """Every blob request of the run's reads (ReadPointer and ReadFirstByte) for the pointer."""
    return [r for r in sb.control.requests("blob") if r["path"].endswith("training-code/latest.json")
            and r["principal"] == "adf-factory"]


def test_connect_via_names_the_runtime_and_its_region(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(REPO_ADF)]) == 0
    code, read = read_activity(capsys)
    assert code == 0
    assert read["output"]["effectiveIntegrationRuntime"] == f"ManagedVnetIR ({REGION})"


def test_without_connect_via_an_auto_resolve_runtime_in_the_managed_vnet_uses_the_private_endpoint(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(factory_without_connect_via(tmp_path, auto_resolve_in_vnet=True))]) == 0
    code, read = read_activity(capsys)
    assert code == 0, read["error"]
    assert read["output"]["effectiveIntegrationRuntime"] == f"AutoResolveIntegrationRuntime ({REGION})"
    assert {r["origin"] for r in pointer_reads(sandbox_env)} == {"private-endpoint"}


def test_without_connect_via_the_public_auto_resolve_runtime_is_refused_by_the_firewall(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(factory_without_connect_via(tmp_path, auto_resolve_in_vnet=False))]) == 0
    code, read = read_activity(capsys)
    assert code == 4 and "AuthorizationFailure" in read["error"]["message"]
    assert read["output"]["effectiveIntegrationRuntime"] == f"AutoResolveIntegrationRuntime ({REGION})"
    assert {(r["origin"], r["status"]) for r in pointer_reads(sandbox_env)} == {("adf-public", 403)}


def test_the_trusted_services_switch_admits_the_factory_identity_over_the_public_path(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(factory_without_connect_via(tmp_path, auto_resolve_in_vnet=False))]) == 0
    sandbox_env.control.set_factory_trusted_bypass(True)
    code, read = read_activity(capsys)
    assert code == 0, read["error"]
    reads = pointer_reads(sandbox_env)
    assert reads and all(r["origin"] == "adf-public" and r["status"] in (200, 206) for r in reads)  # 206: a range
    sandbox_env.reset()
    assert not is_admitted(sandbox_env, DATA_FACTORY)  # a reset restores the default (off)


def test_the_trusted_services_switch_needs_the_accounts_azure_services_bypass(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    publish_pointer(sandbox_env)
    assert main(["adf", "deploy", str(factory_without_connect_via(tmp_path, auto_resolve_in_vnet=False))]) == 0
    sandbox_env.control.set_factory_trusted_bypass(True)
    sandbox_env.control.set_account_properties(network_acls={"bypass": "None"})
    code, read = read_activity(capsys)
    assert code == 4 and "AuthorizationFailure" in read["error"]["message"]
