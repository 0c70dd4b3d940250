"""Link 3: storage. The pointer account's network settings against how CI reaches it, and the workspace's
``systemDatastoresAuthMode`` against its storage account's ``allowSharedKeyAccess``.

Key-based system datastores (``accessKey``, also what null means) on an account that refuses shared key
cannot work, and the mode is fixed when the workspace is created (AZURE_FACTS.md §6): jobs fail with
``ScriptExecution.StreamAccess.Authentication`` however correct the RBAC is.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.preflight.arm import ArmReadError
from cicd_tools.preflight.context import ML_API, STORAGE_API, Context, read_failure, short
from cicd_tools.preflight.model import Check, LinkResult, fail, ok, warn

LINK = "storage"
TITLE = "Storage: pointer account network settings; workspace datastore auth mode vs shared key"
MAX_IP_RULES = 400  # AZURE_FACTS.md §4
RULES_WARN_AT = 350


def shared_key_allowed(account: dict[str, Any]) -> bool:
    """``allowSharedKeyAccess`` null means true."""
    return (account.get("properties") or {}).get("allowSharedKeyAccess") is not False


def _flag(value: Any) -> str:
    """An ARM boolean as text: ``not set (true)`` for null, never Python's ``None``."""
    return "not set (true)" if value is None else str(value).lower()


def _pointer_account(ctx: Context) -> Check:
    t = ctx.targets
    account = ctx.read(t.account_id, STORAGE_API)
    if isinstance(account, ArmReadError):
        return fail("pointer-account", read_failure(f"storage account {t.storage_account}", account),
                    f"Check --account / CICD_STORAGE_ACCOUNT and --resource-group (looked for {t.account_id}).")
    props = account.get("properties") or {}
    acls = props.get("networkAcls") or {}
    public = str(props.get("publicNetworkAccess") or "Enabled")
    default_action = str(acls.get("defaultAction") or "Allow")
    rules = len(acls.get("ipRules") or [])
    evidence = (f"{t.storage_account}: allowSharedKeyAccess={_flag(props.get('allowSharedKeyAccess'))}, "
                f"publicNetworkAccess={public}, defaultAction={default_action}, bypass={acls.get('bypass')}, "
                f"{rules} IP rule(s)")
    name, group = t.storage_account, t.resource_group
    if t.manage_firewall and public != "Enabled":
        return fail("pointer-account", f"{evidence}: IP rules cannot admit the CI agent while public network access "
                    f"is {public}",
                    f"az storage account update -n {name} -g {group} --public-network-access Enabled "
                    "--default-action Deny (Bicep: properties.publicNetworkAccess 'Enabled'), or run CI on an agent "
                    "inside the VNet and pass --no-firewall")
    if t.manage_firewall and rules >= MAX_IP_RULES:
        return fail("pointer-account", f"{evidence}: the account is at the limit of {MAX_IP_RULES} IP rules, so "
                    "`firewall open` cannot add one", "Remove stale rules: `cicd-tools firewall sweep`.")
    if rules >= RULES_WARN_AT:
        return warn("pointer-account", f"{evidence}: close to the {MAX_IP_RULES}-rule limit",
                    "Remove stale rules: `cicd-tools firewall sweep`.")
    if default_action == "Allow" and public == "Enabled":
        return warn("pointer-account", f"{evidence}: the account admits every network",
                    f"az storage account update -n {name} -g {group} --default-action Deny")
    if shared_key_allowed(account):
        return warn("pointer-account", f"{evidence}: shared key is allowed (null means true); identity access is "
                    "all the toolkit needs",
                    f"az storage account update -n {name} -g {group} --allow-shared-key-access false")
    return ok("pointer-account", evidence)


def _datastore_auth(ctx: Context) -> Check:
    t = ctx.targets
    workspace = ctx.read(t.workspace_id, ML_API)
    if isinstance(workspace, ArmReadError):
        return fail("workspace-datastore-auth", read_failure(f"workspace {t.workspace}", workspace),
                    f"Check --workspace / CICD_WORKSPACE (looked for {t.workspace_id}).")
    props = workspace.get("properties") or {}
    raw_mode = props.get("systemDatastoresAuthMode")
    mode = str(raw_mode or "accessKey")
    store_id = str(props.get("storageAccount") or "")
    if not store_id:
        return warn("workspace-datastore-auth", f"workspace {t.workspace} names no storage account: cannot compare "
                    f"systemDatastoresAuthMode={raw_mode or 'not set'} with its shared-key setting")
    store = ctx.read(store_id, STORAGE_API)
    if isinstance(store, ArmReadError):
        return warn("workspace-datastore-auth", f"systemDatastoresAuthMode={raw_mode or 'not set'}; "
                    + read_failure(f"workspace storage {short(store_id)}", store))
    shared = shared_key_allowed(store)
    evidence = (f"workspace {t.workspace}: systemDatastoresAuthMode={raw_mode or 'not set'} ({mode}); storage "
                f"{short(store_id)}: allowSharedKeyAccess="
                f"{_flag((store.get('properties') or {}).get('allowSharedKeyAccess'))}")
    if mode.lower() == "accesskey" and not shared:
        return fail("workspace-datastore-auth",
                    f"{evidence}: the system datastores use account keys but the account refuses shared key, so "
                    "jobs fail with ScriptExecution.StreamAccess.Authentication; the mode cannot be changed after "
                    "the workspace is created",
                    "Create the workspace with identity-based system datastores (Bicep/ARM: properties."
                    "systemDatastoresAuthMode 'identity') and move to it, or allow shared key on its storage: "
                    f"az storage account update --ids {store_id} --allow-shared-key-access true")
    return ok("workspace-datastore-auth", evidence)


def check(ctx: Context) -> LinkResult:
    return LinkResult(LINK, TITLE, (_datastore_auth(ctx), _pointer_account(ctx)))
