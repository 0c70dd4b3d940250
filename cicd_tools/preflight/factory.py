"""Link 2: the factory's managed identity and its network path to the pointer.

The factory's WebActivity reads ``latest.json`` with its managed identity through the managed VNet IR; from
there storage is reached only through an **approved** managed private endpoint to the account's ``blob``
sub-resource, and only when ``connectVia`` sits inside ``typeProperties`` (AZURE_FACTS.md §5, reusing
``adf lint`` rules ADF010/ADF011). The identity needs a blob read role on the pointer container and a role on the
workspace that submits and reads jobs. Read over ARM REST (Microsoft.DataFactory 2018-06-01).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cicd_tools.preflight.arm import ArmReadError
from cicd_tools.preflight.ci_identity import require
from cicd_tools.preflight.context import ADF_API, Context, read_failure
from cicd_tools.preflight.model import Check, LinkResult, fail, ok
from cicd_tools.preflight.rbac import BLOB_READ

LINK = "factory"
TITLE = "Factory: managed identity roles, managed VNet IR, approved private endpoint, connectVia"
CONNECT_VIA_RULES = ("ADF010", "ADF011")


def _managed_ir(ctx: Context) -> Check:
    t = ctx.targets
    try:
        runtimes = ctx.reader.list(f"{t.factory_id}/integrationRuntimes", ADF_API)
    except ArmReadError as err:
        return fail("factory-managed-ir", read_failure("the factory's integration runtimes", err),
                    "Give the CI identity Reader on the factory.")
    managed = [r for r in runtimes if (r.get("properties") or {}).get("type") == "Managed"
               and ((r.get("properties") or {}).get("managedVirtualNetwork") or {}).get("referenceName")]
    if not managed:
        names = ", ".join(f"{r.get('name')} ({(r.get('properties') or {}).get('type')})" for r in runtimes) or "none"
        return fail("factory-managed-ir", f"no managed VNet integration runtime in {t.factory} (runtimes: {names})",
                    "Create one (ADF Git: integrationRuntime/ManagedVnetIR.json with properties.type 'Managed' and "
                    "managedVirtualNetwork.referenceName 'default') and publish the factory")
    vnets = [((r.get("properties") or {}).get("managedVirtualNetwork") or {}).get("referenceName") for r in managed]
    return ok("factory-managed-ir", "managed VNet IR: " + ", ".join(
        f"{r.get('name')} (vnet {vnet})" for r, vnet in zip(managed, vnets, strict=True)))


def _private_endpoint(ctx: Context) -> Check:
    t = ctx.targets
    try:
        endpoints = ctx.reader.list(f"{t.factory_id}/managedVirtualNetworks/default/managedPrivateEndpoints", ADF_API)
    except ArmReadError as err:
        return fail("factory-private-endpoint", read_failure("the factory's managed private endpoints", err),
                    "Create the managed virtual network 'default' and a managed private endpoint to the account.")
    to_blob = [e for e in endpoints
               if str((e.get("properties") or {}).get("privateLinkResourceId", "")).lower() == t.account_id.lower()
               and str((e.get("properties") or {}).get("groupId", "")).lower() == "blob"]
    if not to_blob:
        return fail("factory-private-endpoint", f"no managed private endpoint to {t.storage_account}'s blob "
                    f"sub-resource ({len(endpoints)} endpoint(s) in the managed VNet)",
                    "Add adf/managedVirtualNetwork/default/managedPrivateEndpoint/<name>.json with "
                    f"privateLinkResourceId {t.account_id} and groupId 'blob', publish, then approve it on the account")

    def state(e: dict[str, Any]) -> str:
        return str(((e.get("properties") or {}).get("connectionState") or {}).get("status") or "Unknown")

    approved = [e for e in to_blob if state(e) == "Approved"]
    described = ", ".join(f"{e.get('name')}: {state(e)} ({(e.get('properties') or {}).get('provisioningState')})"
                          for e in to_blob)
    if not approved:
        return fail("factory-private-endpoint", f"the managed private endpoint to {t.storage_account}/blob is not "
                    f"approved: {described}",
                    f"az network private-endpoint-connection list --id {t.account_id}, then "
                    "az network private-endpoint-connection approve --id <the pending connection's id> "
                    '--description "ADF managed private endpoint"')
    return ok("factory-private-endpoint", f"managed private endpoint to {t.storage_account}/blob: {described}")


STORAGE_URL_HINTS = (".blob.core.", "storageblobendpoint", "blob.storage.azure.net")


def _web_activities(node: Any) -> Iterator[dict[str, Any]]:
    """Every WebActivity, nested ones (IfCondition, ForEach, Until, Switch) included."""
    if isinstance(node, dict):
        if node.get("type") == "WebActivity" and isinstance(node.get("typeProperties"), dict):
            yield node
        for value in node.values():
            yield from _web_activities(value)
    elif isinstance(node, list):
        for item in node:
            yield from _web_activities(item)


def _public_storage_calls(adf_dir: Path) -> list[str]:
    """WebActivities whose URL names blob storage and that have no ``connectVia`` at all (public network)."""
    from cicd_tools.adf.loader import load_paths

    found = []
    for loaded in load_paths([adf_dir]):
        for doc in loaded.pipelines:
            for activity in _web_activities(doc.properties.get("activities")):
                props = activity["typeProperties"]
                url = json.dumps(props.get("url", "")).lower()
                if any(h in url for h in STORAGE_URL_HINTS) and "connectVia" not in props \
                        and "connectVia" not in activity:
                    found.append(f"{doc.source.path} {doc.name}/{activity.get('name')}")
    return found


def _connect_via(ctx: Context) -> Check:
    from cicd_tools.adf.lint import lint_paths

    adf_dir = ctx.targets.adf_dir
    if adf_dir is None:
        return ok("factory-connect-via", "no adf/ folder given: WebActivity connectVia not checked")
    report = lint_paths([adf_dir])
    bad = [f for f in report.findings if f.rule in CONNECT_VIA_RULES]
    if bad:
        first = bad[0]
        where = "; ".join(f"{f.file}:{f.line} {f.pipeline}/{f.activity}: [{f.rule}] {f.message}" for f in bad[:5])
        return fail("factory-connect-via", f"{len(bad)} WebActivity connectVia problem(s): {where}", first.fix)
    public = _public_storage_calls(adf_dir)
    if public:
        return fail("factory-connect-via", f"{len(public)} WebActivity call(s) to blob storage without connectVia "
                    f"leave over the public network, which defaultAction Deny refuses: {'; '.join(public[:5])}",
                    'Add "connectVia": {"referenceName": "<the managed VNet IR>", "type": '
                    '"IntegrationRuntimeReference"} inside each activity\'s typeProperties')
    return ok("factory-connect-via", f"{report.pipelines} pipeline(s) under {adf_dir}: every connectVia is inside "
              "typeProperties and names a runtime the factory has (adf lint ADF010/ADF011); every WebActivity to "
              "blob storage goes through one")


def check(ctx: Context) -> LinkResult:
    t = ctx.targets
    factory = ctx.read(t.factory_id, ADF_API)
    if isinstance(factory, ArmReadError):
        return LinkResult(LINK, TITLE, (fail("factory", read_failure(f"factory {t.factory}", factory),
                                             "Check --factory / CICD_FACTORY, or pass --skip factory when ADF is "
                                             "not used."),))
    identity = factory.get("identity") or {}
    principal = str(identity.get("principalId") or "")
    if not principal:
        return LinkResult(LINK, TITLE, (fail("factory", f"factory {t.factory} has no managed identity "
                                             f"(identity.type={identity.get('type')})",
                                             f"az datafactory update -g {t.resource_group} -n {t.factory} "
                                             "--set identity.type=SystemAssigned (Bicep: identity: { type: "
                                             "'SystemAssigned' })"),))
    who = f"factory identity ({principal})"
    checks = [
        ok("factory", f"factory {t.factory}: identity {identity.get('type')}, principalId {principal}"),
        require(ctx, "factory-blob-read", principal, who, t.container_scope, "read the pointer blobs", (BLOB_READ,),
                "Storage Blob Data Reader", data=True),
        require(ctx, "factory-workspace-jobs", principal, who, t.workspace_id, "submit and read Azure ML jobs",
                ("Microsoft.MachineLearningServices/workspaces/jobs/write",
                 "Microsoft.MachineLearningServices/workspaces/jobs/read"), "AzureML Data Scientist", data=False),
        _managed_ir(ctx),
        _private_endpoint(ctx),
        _connect_via(ctx),
    ]
    return LinkResult(LINK, TITLE, tuple(checks))
