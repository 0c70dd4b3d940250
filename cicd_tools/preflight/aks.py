"""Link 5: the AKS cluster and its Azure ML extension, the extension's identity and its federated credentials.

The chain a job's data mount walks on AKS with identity-based access (AZURE_FACTS.md §6): the cluster issues
service-account tokens (OIDC issuer + workload identity), the Azure ML extension names the identity its pods
use (``identityType`` + the identity's resource id in its ``configurationSettings``), that user-assigned identity
trusts the cluster's issuer for the ``azureml`` service accounts (federated credentials, audience
``api://AzureADTokenExchange``), and holds a data role on the workspace storage.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.preflight.arm import ArmReadError
from cicd_tools.preflight.ci_identity import require
from cicd_tools.preflight.compute import compute_cluster_id
from cicd_tools.preflight.context import ML_API, Context, read_failure, short
from cicd_tools.preflight.model import Check, LinkResult, fail, ok
from cicd_tools.preflight.rbac import BLOB_READ, BLOB_WRITE

LINK = "aks"
TITLE = "AKS: OIDC issuer + workload identity, Azure ML extension identity, federated credentials, data role"
AKS_API = "2024-09-01"
EXTENSIONS_API = "2023-05-01"
MSI_API = "2023-01-31"
AZUREML_EXTENSION_TYPE = "microsoft.azureml.kubernetes"
AUDIENCE = "api://AzureADTokenExchange"
SUBJECTS = ("system:serviceaccount:azureml:default", "system:serviceaccount:azureml:training")


def _setting(settings: dict[str, Any], *names: str) -> str | None:
    """A configuration setting by name, case-insensitively, also as the last segment of a dotted key."""
    wanted = {n.lower() for n in names}
    for key, value in settings.items():
        if key.lower() in wanted or key.lower().rsplit(".", 1)[-1] in wanted:
            return str(value) if value not in (None, "") else None
    return None


class _Stop(Exception):
    """A link failure that makes the later checks of this link meaningless."""


def _cluster(ctx: Context, checks: list[Check]) -> tuple[str, dict[str, Any]]:
    t = ctx.targets
    attached = compute_cluster_id(ctx)
    cluster_id = t.cluster_id(t.aks_cluster) if t.aks_cluster else attached
    if cluster_id is None:
        checks.append(fail("aks-cluster", f"cannot tell which AKS cluster: compute {t.compute} cannot be read",
                           "Pass --aks-cluster / CICD_AKS_CLUSTER, or fix the compute link first."))
        raise _Stop
    if attached and attached.lower() != cluster_id.lower():
        checks.append(fail("aks-cluster", f"compute {t.compute} is attached to {attached}, not {cluster_id}",
                           "Pass the cluster the compute is attached to (--aks-cluster), or re-attach the compute."))
        raise _Stop
    cluster = ctx.read(cluster_id, AKS_API)
    if isinstance(cluster, ArmReadError):
        checks.append(fail("aks-cluster", read_failure(f"AKS cluster {short(cluster_id)}", cluster),
                           "Check --aks-cluster / CICD_AKS_CLUSTER."))
        raise _Stop
    checks.append(ok("aks-cluster", f"cluster {short(cluster_id)}: provisioningState="
                     f"{(cluster.get('properties') or {}).get('provisioningState')}"))
    return cluster_id, cluster


def _workload_identity(ctx: Context, cluster_id: str, cluster: dict[str, Any], checks: list[Check]) -> str:
    props = cluster.get("properties") or {}
    oidc = props.get("oidcIssuerProfile") or {}
    workload = ((props.get("securityProfile") or {}).get("workloadIdentity") or {}).get("enabled")
    issuer = str(oidc.get("issuerURL") or "")
    evidence = (f"oidcIssuerProfile.enabled={oidc.get('enabled')}, issuerURL={issuer or None}, "
                f"securityProfile.workloadIdentity.enabled={workload}")
    if not (oidc.get("enabled") and issuer and workload):
        name = cluster.get("name") or short(cluster_id).split("/")[-1]
        checks.append(fail("aks-workload-identity", f"{evidence}: pods cannot exchange service-account tokens "
                           "for Entra tokens, so no federated credential can work",
                           f"az aks update -g {ctx.targets.resource_group} -n {name} --enable-oidc-issuer "
                           "--enable-workload-identity (Terraform azurerm_kubernetes_cluster: oidc_issuer_enabled = "
                           "true, workload_identity_enabled = true; both default to false)"))
        return ""
    checks.append(ok("aks-workload-identity", evidence))
    return issuer


def _extension(ctx: Context, cluster_id: str, checks: list[Check]) -> tuple[str | None, dict[str, Any]]:
    try:
        items = ctx.reader.list(f"{cluster_id}/providers/Microsoft.KubernetesConfiguration/extensions",
                                EXTENSIONS_API)
    except ArmReadError as err:
        checks.append(fail("aks-extension", read_failure(f"extensions of {short(cluster_id)}", err),
                           "Give the CI identity Reader on the cluster."))
        raise _Stop from None
    ext = next((e for e in items if str((e.get("properties") or {}).get("extensionType", "")).lower()
                == AZUREML_EXTENSION_TYPE), None)
    if ext is None:
        checks.append(fail("aks-extension", f"no Microsoft.AzureML.Kubernetes extension on {short(cluster_id)} "
                           f"({len(items)} other extension(s))",
                           f"az k8s-extension create --cluster-type managedClusters --cluster-name "
                           f"{cluster_id.rsplit('/', 1)[-1]} -g {ctx.targets.resource_group} --name azureml "
                           "--extension-type Microsoft.AzureML.Kubernetes --scope cluster "
                           "--configuration-settings enableTraining=True"))
        raise _Stop
    props = ext.get("properties") or {}
    checks.append(ok("aks-extension", f"extension {ext.get('name')}: {props.get('extensionType')} "
                     f"{props.get('version')}, provisioningState={props.get('provisioningState')}"))
    settings = dict(props.get("configurationSettings") or {})
    kind = _setting(settings, "identityType")
    identity_id = _setting(settings, "identityResourceId", "identityId")
    evidence = f"extension {ext.get('name')}: identityType={kind}, identityResourceId={identity_id}"
    fix = (f"az k8s-extension update --cluster-type managedClusters --cluster-name {cluster_id.rsplit('/', 1)[-1]} "
           f"-g {ctx.targets.resource_group} --name {ext.get('name')} --configuration-settings "
           "identityType=UserAssigned identityResourceId=<user-assigned identity id>")
    if kind is None or (kind.lower() == "userassigned" and identity_id is None):
        checks.append(fail("aks-extension-identity", f"{evidence}: the extension's pods have no identity for "
                           "workspace storage", fix))
        raise _Stop
    checks.append(ok("aks-extension-identity", evidence))
    return (identity_id if kind.lower() == "userassigned" else None), ext


def _federation(ctx: Context, identity_id: str, issuer: str, checks: list[Check]) -> str:
    t = ctx.targets
    identity = ctx.read(identity_id, MSI_API)
    if isinstance(identity, ArmReadError):
        checks.append(fail("aks-identity", read_failure(f"identity {short(identity_id)}", identity),
                           "Create the user-assigned identity, or point the extension at the one that exists."))
        raise _Stop
    principal = str((identity.get("properties") or {}).get("principalId") or "")
    checks.append(ok("aks-identity", f"identity {short(identity_id)}: principalId={principal}"))
    try:
        creds = ctx.reader.list(f"{identity_id}/federatedIdentityCredentials", MSI_API)
    except ArmReadError as err:
        checks.append(fail("aks-federated-credentials", read_failure("its federated credentials", err),
                           "Give the CI identity Reader on the identity."))
        return principal
    missing = []
    for subject in SUBJECTS:
        matching = [c for c in creds if (c.get("properties") or {}).get("subject") == subject]
        good = [c for c in matching if (c.get("properties") or {}).get("issuer") == issuer
                and AUDIENCE in ((c.get("properties") or {}).get("audiences") or [])]
        if not good:
            seen = "; ".join(f"{c.get('name')}: issuer {(c.get('properties') or {}).get('issuer')}, audiences "
                             f"{(c.get('properties') or {}).get('audiences')}" for c in matching)
            missing.append(subject + (f" (found {seen})" if seen else ""))
    name = identity_id.rsplit("/", 1)[-1]
    if missing:
        issuer_text = issuer or "<the cluster's oidcIssuerProfile.issuerURL>"
        fixes = [f"az identity federated-credential create -g {t.resource_group} --identity-name {name} "
                 f"--name {s.split()[0].rsplit(':', 1)[-1]} --issuer {issuer_text} --subject {s.split()[0]} "
                 f"--audiences {AUDIENCE}" for s in missing]
        checks.append(fail("aks-federated-credentials", f"identity {name} has {len(creds)} federated credential(s); "
                           f"none for {'; '.join(missing)} with issuer {issuer or '(cluster has none)'} and "
                           f"audience {AUDIENCE}", "\n".join(fixes)))
    else:
        checks.append(ok("aks-federated-credentials", f"identity {name} trusts {issuer} for {', '.join(SUBJECTS)} "
                         f"(audience {AUDIENCE})"))
    return principal


def check(ctx: Context) -> LinkResult:
    checks: list[Check] = []
    try:
        cluster_id, cluster = _cluster(ctx, checks)
        issuer = _workload_identity(ctx, cluster_id, cluster, checks)
        identity_id, ext = _extension(ctx, cluster_id, checks)
        if identity_id is not None:
            principal = _federation(ctx, identity_id, issuer, checks)
        else:  # SystemAssigned: the extension's own identity, no federation to check
            principal = str((ext.get("identity") or {}).get("principalId") or "")
        _data_role(ctx, principal, checks)
    except _Stop:
        pass
    return LinkResult(LINK, TITLE, tuple(checks))


def _data_role(ctx: Context, principal: str, checks: list[Check]) -> None:
    workspace = ctx.read(ctx.targets.workspace_id, ML_API)
    store = "" if isinstance(workspace, ArmReadError) else str(
        (workspace.get("properties") or {}).get("storageAccount") or "")
    if not principal or not store:
        checks.append(fail("aks-identity-data-role", "cannot tell the extension identity's principal or the "
                           "workspace storage account", "Fix the checks above first."))
        return
    result = require(ctx, "aks-identity-data-role", principal, "the extension identity", store,
                     "read and write workspace storage", (BLOB_READ, BLOB_WRITE), "Storage Blob Data Contributor",
                     data=True)
    checks.append(result)
