"""``pointer write`` as an operation: a typed request in, the publication's result out (no argparse, no printing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from cicd_tools.pointer.contract import CodeAssetPointer, PublishResult


@dataclass(frozen=True)
class PointerWriteRequest:
    """One pointer to publish. ``asset_id`` None: the workspace's id of ``asset:version``."""

    asset: str
    version: str
    workspace: Settings  # subscription, resource group, workspace, ARM endpoint
    asset_id: str | None = None
    requested_version: str | None = None
    content_hash: str | None = None


def workspace_version_check(workspace_settings: Settings, credential: Any) -> Callable[[str, str], bool]:
    """The workspace lookup the writer uses to refuse a version Azure ML does not hold."""
    from cicd_tools.codeassets.workspace import WorkspaceCodes, WorkspaceRef

    try:
        workspace = WorkspaceRef.from_settings(workspace_settings)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.message}: the pointer writer checks that the workspace holds the version",
            hint="Pass the workspace flags, or --skip-workspace-check if you have checked it yourself.",
        ) from None
    return WorkspaceCodes(workspace, credential).version_exists


def pointer_for(request: PointerWriteRequest, provenance: Mapping[str, str | None] | None = None, *,
                source: str = "assetId") -> CodeAssetPointer:
    """The pointer record ``request`` publishes, stamped now.

    Raises: UsageError (an invalid pointer); ContractViolation (an ``assetId`` of another workspace, the rule
    ``pointer read`` and the factory's CheckContract apply).
    """
    from pydantic import ValidationError

    from cicd_tools.ci import run_provenance
    from cicd_tools.pointer.contract import CodeAssetPointer, utc_now_iso

    ws = request.workspace
    asset_id = request.asset_id or f"{ws.workspace_id()}/codes/{request.asset}/versions/{request.version}"
    prov = run_provenance() if provenance is None else provenance
    try:
        pointer = CodeAssetPointer(
            assetName=request.asset,
            version=request.version,
            assetId=asset_id,
            requestedVersion=request.requested_version,
            contentHash=request.content_hash,
            workspaceName=ws.workspace,
            resourceGroup=ws.resource_group,
            subscriptionId=ws.subscription_id,
            buildId=prov["buildId"],
            sourceBranch=prov["sourceBranch"],
            sourceVersion=prov["sourceVersion"],
            registeredAtUtc=utc_now_iso(),  # this call publishes the registration now
        )
    except ValidationError as exc:
        raise UsageError(f"invalid pointer: {exc.errors()[0]['msg']}") from None
    if ws.subscription_id and ws.resource_group and ws.workspace:
        from cicd_tools.pointer.contract import check_workspace

        check_workspace(pointer, ws.workspace_id(), source=source)
    return pointer


def write_pointer(
    request: PointerWriteRequest, container: Any, *, version_exists: Callable[[str, str], bool] | None
) -> PublishResult:
    """Publish ``request``'s pointer to ``container``.

    Raises: UsageError (an invalid pointer), ContractViolation (the workspace lacks the version), AzureError.
    """
    from cicd_tools.pointer.contract import publish_pointer

    return publish_pointer(container, pointer_for(request), version_exists=version_exists)
