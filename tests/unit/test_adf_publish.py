"""``cicd_tools.adf.publish``: reading a factory folder, comparing it with the published factory, the deploy plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.publish import FactoryFolderError, Published, compare, load_repo, pipeline_order, plan
from cicd_tools.support.errors import UsageError

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"


def write(root: Path, rel: str, doc: dict[str, Any]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def published_from(repo_root: Path, **extra: Any) -> Published:
    """What the factory holds after a deploy of ``repo_root`` (service fields added like the service does)."""
    repo = load_repo(repo_root)
    resources = {kind: {n: dict(p) for n, p in items.items()} for kind, items in repo.resources.items()}
    for props in resources["managedPrivateEndpoints"].values():
        props.update(connectionState={"status": "Approved"}, provisioningState="Succeeded", fqdns=[])
    for props in resources["managedVirtualNetworks"].values():
        props.update(vNetId="0000", alias="x")
    states = extra.pop("trigger_states", {})
    return Published(resources, dict(repo.global_parameters or {}), states)


def test_the_shipped_factory_folder_is_read_with_nested_private_endpoints_and_globals() -> None:
    repo = load_repo(REPO_ADF)
    assert set(repo.resources["managedPrivateEndpoints"]) == {"mpe-mlstorage-blob"}
    assert set(repo.resources["integrationRuntimes"]) == {"ManagedVnetIR"}
    assert "pl_read_pointer" in repo.resources["pipelines"]
    assert repo.global_parameters is not None and "storageBlobEndpoint" in repo.global_parameters


def test_global_overrides_take_the_declared_type_and_unknown_names_are_refused() -> None:
    repo = load_repo(REPO_ADF, global_overrides={"pointerContainer": "staging"})
    assert repo.global_parameters is not None
    assert repo.global_parameters["pointerContainer"] == {"type": "String", "value": "staging"}
    with pytest.raises(UsageError, match="no global parameter"):
        load_repo(REPO_ADF, global_overrides={"nope": 1})


def test_a_folder_that_is_not_a_factory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(FactoryFolderError, match="no pipeline/"):
        load_repo(tmp_path)
    write(tmp_path, "pipeline/p.json", {"name": "p"})
    with pytest.raises(FactoryFolderError, match="no 'properties'"):
        load_repo(tmp_path)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda root, out: (root / "pipeline" / "leak.json").symlink_to(out / "secret.json"), "outside-root"),
    (lambda root, out: __import__("os").mkfifo(root / "pipeline" / "pipe.json"), "special-file"),
    (lambda root, out: (root / "factory").symlink_to(out, target_is_directory=True), "outside the factory folder"),
])
def test_deploy_reads_nothing_outside_the_factory_folder_and_no_special_file(
    tmp_path: Path, make: Any, reason: str
) -> None:
    """The walk policy (issue 19): a link out of the folder would publish this machine's file; a FIFO would hang."""
    out = tmp_path / "outside"
    write(out, "secret.json", {"name": "secret", "properties": {"activities": []}})
    root = tmp_path / "adf"
    write(root, "pipeline/p.json", {"name": "p", "properties": {"activities": []}})
    make(root, out)
    with pytest.raises(FactoryFolderError, match=reason):
        load_repo(root)


def test_service_filled_fields_do_not_count_as_differences() -> None:
    assert compare(load_repo(REPO_ADF), published_from(REPO_ADF)) == []


def test_the_plan_puts_what_a_resource_references_first(tmp_path: Path) -> None:
    write(tmp_path, "pipeline/parent.json", {"name": "parent", "properties": {"activities": [
        {"name": "Call", "type": "ExecutePipeline",
         "typeProperties": {"pipeline": {"referenceName": "child", "type": "PipelineReference"}}}]}})
    write(tmp_path, "pipeline/child.json", {"name": "child", "properties": {"activities": []}})
    write(tmp_path, "integrationRuntime/ir.json", {"name": "ir", "properties": {"type": "Managed"}})
    write(tmp_path, "managedVirtualNetwork/default/managedPrivateEndpoint/pe.json",
          {"name": "pe", "properties": {"privateLinkResourceId": "/x", "groupId": "blob"}})
    write(tmp_path, "linkedService/ls.json", {"name": "ls", "properties": {"type": "AzureBlobStorage"}})
    empty = Published({}, {}, {})
    steps = [(s.action, s.kind, s.name) for s in plan(load_repo(tmp_path), empty)]
    assert steps == [("put", "integrationRuntimes", "ir"), ("put", "managedPrivateEndpoints", "pe"),
                     ("put", "linkedServices", "ls"), ("put", "pipelines", "child"), ("put", "pipelines", "parent")]


def test_running_triggers_are_stopped_before_and_restarted_after_only_when_something_changes(tmp_path: Path) -> None:
    write(tmp_path, "pipeline/p.json", {"name": "p", "properties": {"activities": []}})
    write(tmp_path, "trigger/nightly.json", {"name": "nightly", "properties": {"type": "ScheduleTrigger"}})
    write(tmp_path, "trigger/manual.json", {"name": "manual", "properties": {"type": "ScheduleTrigger"}})
    repo = load_repo(tmp_path)
    current = published_from(tmp_path, trigger_states={"nightly": "Started", "manual": "Stopped"})
    assert plan(repo, current) == []  # nothing differs: triggers keep running untouched
    repo.resources["pipelines"]["p"] = {"activities": [], "description": "new"}
    steps = [(s.action, s.name) for s in plan(repo, current)]
    assert steps == [("stop-trigger", "nightly"), ("put", "p"), ("start-trigger", "nightly")]


def test_orphans_are_deleted_only_when_asked_and_dependents_first(tmp_path: Path) -> None:
    write(tmp_path, "pipeline/p.json", {"name": "p", "properties": {"activities": []}})
    current = published_from(tmp_path)
    current.resources["pipelines"]["old"] = {"activities": []}
    current.resources["linkedServices"] = {"oldls": {"type": "AzureBlobStorage"}}
    repo = load_repo(tmp_path)
    assert [c.action for c in compare(repo, current)] == ["orphan", "orphan"]
    assert plan(repo, current) == []
    steps = [(s.action, s.kind, s.name) for s in plan(repo, current, delete_orphans=True)]
    assert steps == [("delete", "pipelines", "old"), ("delete", "linkedServices", "oldls")]


def test_pipeline_order_survives_a_cycle() -> None:
    ref = {"type": "PipelineReference"}
    pipelines = {"a": {"x": {**ref, "referenceName": "b"}}, "b": {"x": {**ref, "referenceName": "a"}}}
    assert sorted(pipeline_order(pipelines)) == ["a", "b"]


def test_a_lower_case_global_parameter_type_is_not_a_difference(tmp_path: Path) -> None:
    write(tmp_path, "pipeline/p.json", {"name": "p", "properties": {"activities": []}})
    write(tmp_path, "factory/f.json", {"name": "f", "properties": {"globalParameters": {
        "waitTime": {"type": "int", "value": 5}}}})
    current = published_from(tmp_path)
    current.global_parameters = {"waitTime": {"type": "Int", "value": 5}}  # as the service answers it
    assert compare(load_repo(tmp_path), current) == []
    current.global_parameters = {"waitTime": {"type": "Int", "value": 6}}
    assert [c.name for c in compare(load_repo(tmp_path), current)] == ["globalParameters"]
