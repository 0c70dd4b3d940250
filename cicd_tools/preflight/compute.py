"""Link 4: the workspace and its Kubernetes compute: exists, attached, one identity, the instance types the
factory's pipelines name (``instanceType`` values and defaults under ``adf/``) exist on it.

On AKS, ``resources.instanceType`` names an InstanceType custom resource of the cluster (AZURE_FACTS.md §6);
a Kubernetes compute supports one identity, system- or user-assigned, not both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cicd_tools.preflight.arm import ArmReadError
from cicd_tools.preflight.context import ML_API, STORAGE_API, Context, read_failure, role_fix, short
from cicd_tools.preflight.model import Check, LinkResult, fail, ok
from cicd_tools.preflight.rbac import BLOB_READ, BLOB_WRITE
from cicd_tools.support.bounded import InputRefused, load_json_bounded

LINK = "compute"
TITLE = "Workspace and Kubernetes compute: attached, one identity, the pipelines' instance types"


def _instance_types_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "instanceType":
                if isinstance(value, str) and value and not value.startswith("@"):
                    yield value
                elif isinstance(value, dict) and isinstance(value.get("defaultValue"), str):
                    yield value["defaultValue"]
            yield from _instance_types_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _instance_types_in(item)


def required_instance_types(adf_dir: Path) -> dict[str, str]:
    """Instance type -> the first file naming it (literal values and parameter defaults; expressions skipped)."""
    found: dict[str, str] = {}
    for path in sorted(adf_dir.rglob("*.json")):
        try:
            data = load_json_bounded(path, what="ADF file")
        except (OSError, ValueError, InputRefused):
            continue  # `adf lint` reports unreadable files
        for name in _instance_types_in(data):
            found.setdefault(name, str(path))
    return found


def _identity(compute: dict[str, Any]) -> Check:
    identity = compute.get("identity") or {}
    kind = str(identity.get("type") or "None")
    users = list((identity.get("userAssignedIdentities") or {}).keys())
    kinds = {k.strip().lower() for k in kind.split(",")}
    evidence = f"compute identity: {kind}" + (f" ({', '.join(users)})" if users else "")
    if len(kinds) > 1 or len(users) > 1:
        return fail("compute-identity", f"{evidence}: a Kubernetes compute supports one identity, system- or "
                    "user-assigned, not both",
                    "Re-attach the compute with one identity: az ml compute attach --type Kubernetes "
                    "--identity-type UserAssigned --user-assigned-identities <one id> (or SystemAssigned)")
    return ok("compute-identity", evidence)


def _instance_types(ctx: Context, compute: dict[str, Any]) -> Check:
    inner = (compute.get("properties") or {}).get("properties") or {}
    available = set((inner.get("instanceTypes") or {}).keys())
    if inner.get("defaultInstanceType"):
        available.add(str(inner["defaultInstanceType"]))
    adf_dir = ctx.targets.adf_dir
    if adf_dir is None:
        return ok("compute-instance-types", f"instance types on the compute: {', '.join(sorted(available)) or 'none'}"
                  " (no adf/ folder given: nothing to compare)")
    wanted = required_instance_types(adf_dir)
    missing = sorted(set(wanted) - available)
    evidence = (f"pipelines under {adf_dir} name {', '.join(sorted(wanted)) or 'no instance type'}; the compute has "
                f"{', '.join(sorted(available)) or 'none'}")
    if missing:
        return fail("compute-instance-types", f"{evidence}: missing {', '.join(missing)} (first named in "
                    f"{wanted[missing[0]]})",
                    f"Create InstanceType custom resources named {', '.join(missing)} on the cluster (kubectl apply "
                    "-f instance-types.yaml, apiVersion amlarc.azureml.com/v1alpha1, kind InstanceType), or change "
                    "the pipelines' instanceType")
    return ok("compute-instance-types", evidence)


def _identity_data_role(ctx: Context, compute: dict[str, Any], workspace: dict[str, Any]) -> Check:
    """With shared key off on the workspace storage, the compute identity mounts data with a token: it needs a
    blob data role there (with shared key on, the datastore's account key is used and no role is needed)."""
    identity = compute.get("identity") or {}
    users = identity.get("userAssignedIdentities") or {}
    principal = str(identity.get("principalId") or next(
        (str(v.get("principalId")) for v in users.values() if isinstance(v, dict) and v.get("principalId")), ""))
    store_id = str((workspace.get("properties") or {}).get("storageAccount") or "")
    if not principal or not store_id:
        return ok("compute-identity-data-role", "no compute identity or workspace storage to check")
    store = ctx.read(store_id, STORAGE_API)
    shared_key_off = not isinstance(store, ArmReadError) and (
        (store.get("properties") or {}).get("allowSharedKeyAccess") is False)
    verdict = ctx.rbac.check(principal, store_id, (BLOB_READ, BLOB_WRITE), data=True)
    if verdict.granted:
        return ok("compute-identity-data-role", f"compute identity {principal} can read and write "
                  f"{short(store_id)}: " + "; ".join(g.describe() for g in verdict.grants))
    if not shared_key_off:
        return ok("compute-identity-data-role", f"compute identity {principal} holds no blob data role on "
                  f"{short(store_id)}; not needed while it allows shared key (needed once shared key is disabled)")
    return fail("compute-identity-data-role", f"shared key is disabled on {short(store_id)} and compute identity "
                f"{principal} holds no blob data role there"
                + (f" ({verdict.unknown})" if verdict.unknown else ""),
                role_fix(principal, "Storage Blob Data Contributor", store_id))


def compute_cluster_id(ctx: Context) -> str | None:
    """The AKS cluster the compute is attached to (``properties.resourceId``), when the compute can be read."""
    compute = ctx.read(ctx.targets.compute_id, ML_API)
    if isinstance(compute, ArmReadError):
        return None
    return str((compute.get("properties") or {}).get("resourceId") or "") or None


def check(ctx: Context) -> LinkResult:
    t = ctx.targets
    workspace = ctx.read(t.workspace_id, ML_API)
    if isinstance(workspace, ArmReadError):
        return LinkResult(LINK, TITLE, (fail("workspace", read_failure(f"workspace {t.workspace}", workspace),
                                             "Check --workspace / CICD_WORKSPACE and --resource-group."),))
    checks = [ok("workspace", f"workspace {t.workspace}: provisioningState="
                 f"{(workspace.get('properties') or {}).get('provisioningState')}")]
    compute = ctx.read(t.compute_id, ML_API)
    if isinstance(compute, ArmReadError):
        checks.append(fail("compute", read_failure(f"compute {t.compute} in workspace {t.workspace}", compute),
                           f"Attach the AKS cluster: az ml compute attach -g {t.resource_group} -w {t.workspace} "
                           f"-n {t.compute} --type Kubernetes --resource-id <AKS cluster id> --namespace azureml "
                           "(or pass --compute / CICD_COMPUTE)"))
        return LinkResult(LINK, TITLE, tuple(checks))
    props = compute.get("properties") or {}
    kind, state = props.get("computeType"), props.get("provisioningState")
    evidence = (f"compute {t.compute}: computeType={kind}, provisioningState={state}, "
                f"isAttachedCompute={props.get('isAttachedCompute')}, cluster={props.get('resourceId')}")
    if kind != "Kubernetes":
        checks.append(fail("compute", f"{evidence}: not a Kubernetes compute",
                           "Pass --compute naming the workspace's Kubernetes (AKS) compute."))
    elif state != "Succeeded" or not props.get("resourceId"):
        checks.append(fail("compute", f"{evidence}: not attached and ready",
                           f"Re-attach it: az ml compute attach -g {t.resource_group} -w {t.workspace} -n {t.compute} "
                           "--type Kubernetes --resource-id <AKS cluster id>; check the Azure ML extension's status"))
    else:
        checks.append(ok("compute", evidence))
    checks.append(_identity(compute))
    checks.append(_identity_data_role(ctx, compute, workspace))
    checks.append(_instance_types(ctx, compute))
    return LinkResult(LINK, TITLE, tuple(checks))
