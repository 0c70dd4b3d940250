"""``pointer write|read|history|rollback`` as operations: typed requests in, typed results out (no argparse, no
printing; the CLI renders, the flow records)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from cicd_tools.pointer.contract import PublishResult
    from cicd_tools.pointer.model import CodeAssetPointer

log = logging.getLogger("cicd_tools.pointer")


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
    from cicd_tools.pointer.model import CodeAssetPointer, utc_now_iso

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
        from cicd_tools.pointer.model import check_workspace

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


@dataclass(frozen=True)
class PointerReadRequest:
    """Read ``asset``'s pointer. ``workspace`` None (or incomplete): the assetId's workspace is not checked."""

    asset: str
    storage: Settings  # the account, endpoint, container and auth mode
    workspace: Settings | None = None


def read_latest(request: PointerReadRequest, *, container: Any | None = None) -> CodeAssetPointer:
    """The validated ``latest.json`` of ``request.asset``. Raises: ContractViolation, AzureError, ConfigError."""
    from cicd_tools.pointer.contract import read_pointer

    ws = request.workspace
    workspace_id = None
    if ws is not None and ws.subscription_id and ws.resource_group and ws.workspace:
        workspace_id = ws.workspace_id()
    else:
        log.warning("pointer read: the workspace is unknown (--subscription-id/--resource-group/--workspace or"
                    " CICD_*), so the assetId's workspace is not checked")
    return read_pointer(container or _container(request.storage), request.asset, workspace_id=workspace_id)


@dataclass(frozen=True)
class HistoryEntry:
    blob: str
    record: CodeAssetPointer


def publication_history(asset: str, storage: Settings, *, container: Any | None = None) -> tuple[HistoryEntry, ...]:
    """Every publication of ``asset``, newest first. Raises: AzureError, ConfigError."""
    from cicd_tools.pointer.contract import list_history

    return tuple(HistoryEntry(name, rec) for name, rec in list_history(container or _container(storage), asset))


@dataclass(frozen=True)
class PointerRollbackRequest:
    """Republish the newest record of ``to_version``. ``workspace`` None: the version is not looked up in it."""

    asset: str
    to_version: str
    storage: Settings
    workspace: Settings | None = None


def roll_back(request: PointerRollbackRequest, *, container: Any | None = None,
              credential: Any | None = None) -> PublishResult:
    """Roll the pointer back. Raises: UsageError (no such version in the history), ContractViolation, AzureError."""
    from cicd_tools.pointer.contract import rollback_pointer

    target = container or _container(request.storage)
    check = None
    if request.workspace is not None:
        from cicd_tools.credentials import build_credential

        check = workspace_version_check(request.workspace, credential or build_credential())
    return rollback_pointer(target, request.asset, request.to_version, version_exists=check)


def _container(storage: Settings) -> Any:
    from cicd_tools.storage.blob import container_client

    return container_client(storage)
