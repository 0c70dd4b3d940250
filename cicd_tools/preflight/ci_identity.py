"""Link 1: the CI identity (whoever the credential resolves to) holds the roles the pipeline's steps need.

- the firewall step PATCHes the pointer account: ``Microsoft.Storage/storageAccounts/write``
  (Storage Account Contributor, Contributor, or a custom role) when CI manages the firewall;
- pointer publishing writes blobs: a blob data write role on the pointer container or above;
- code registration creates code versions: ``…/workspaces/codes/versions/write`` (AzureML Data Scientist+);
- ``adf run`` creates pipeline runs: ``…/factories/pipelines/createrun/action`` (Data Factory Contributor).
"""

from __future__ import annotations

from cicd_tools.preflight.context import Context, role_fix
from cicd_tools.preflight.model import Check, LinkResult, fail, ok, warn
from cicd_tools.preflight.rbac import BLOB_WRITE

LINK = "ci-identity"
TITLE = "CI identity: roles on the pointer account, the workspace and the factory"


def require(ctx: Context, check_id: str, principal_id: str, who: str, resource: str, what: str,
            actions: tuple[str, ...], role: str, *, data: bool) -> Check:
    """A role check: ok with the granting assignment, warn when it cannot tell, fail with the az command."""
    verdict = ctx.rbac.check(principal_id, resource, actions, data=data)
    if verdict.granted:
        return ok(check_id, f"{who} can {what}: " + "; ".join(g.describe() for g in verdict.grants))
    seen = f" (roles that apply: {', '.join(verdict.roles_seen)})" if verdict.roles_seen else " (no role applies)"
    fix = role_fix(principal_id, role, resource)
    if verdict.unknown:
        return warn(check_id, f"{who}: cannot tell whether it can {what}: {verdict.unknown}{seen}", fix)
    return fail(check_id, f"{who} cannot {what}: no role grants {', '.join(actions)} on {resource}{seen}", fix)


def check(ctx: Context, principal: dict[str, str]) -> LinkResult:
    t = ctx.targets
    oid = principal.get("oid")
    who_name = principal.get("upn") or principal.get("name") or principal.get("appid") or "unknown"
    who = f"CI identity {who_name}"
    if not oid:
        return LinkResult(LINK, TITLE, (warn(
            "ci-principal", "the credential's token carries no object id (oid): cannot read its role assignments",
            "Use a credential that issues Entra ID tokens (service connection, federated identity or managed "
            "identity)."),))
    checks = [ok("ci-principal", f"{who} (object id {oid}, app id {principal.get('appid', '?')}, "
                 f"tenant {principal.get('tid', '?')})")]
    if t.manage_firewall:
        checks.append(require(ctx, "ci-storage-write", oid, who, t.account_id, "change the pointer account's "
                              "firewall rules", ("Microsoft.Storage/storageAccounts/write",),
                              "Storage Account Contributor", data=False))
    checks.append(require(ctx, "ci-blob-data", oid, who, t.container_scope, "write pointer blobs",
                          (BLOB_WRITE,), "Storage Blob Data Contributor", data=True))
    checks.append(require(ctx, "ci-workspace", oid, who, t.workspace_id, "register code versions",
                          ("Microsoft.MachineLearningServices/workspaces/codes/versions/write",),
                          "AzureML Data Scientist", data=False))
    if t.factory:
        checks.append(require(ctx, "ci-factory", oid, who, t.factory_id, "start factory pipeline runs",
                              ("Microsoft.DataFactory/factories/pipelines/createrun/action",),
                              "Data Factory Contributor", data=False))
    return LinkResult(LINK, TITLE, tuple(checks))
