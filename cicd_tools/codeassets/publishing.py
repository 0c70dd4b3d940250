"""Publish a registration as the ``latest.json`` pointer: the ACTUAL version, and only one the workspace holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cicd_tools.ci import run_provenance
from cicd_tools.codeassets.register import AssetNameMismatch, RegistrationResult
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.support.errors import ContractViolation

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from cicd_tools.pointer.contract import PublishResult
    from cicd_tools.pointer.model import CodeAssetPointer


def pointer_from_registration(
    result: RegistrationResult, workspace: WorkspaceRef, environ: Mapping[str, str] | None = None
) -> CodeAssetPointer:
    """The pointer document for a registration: ``version`` and ``assetId`` are what the SDK returned.

    Raises: AssetNameMismatch when the SDK returned another name's asset; ContractViolation when the SDK's
    asset id does not name the returned version.
    """
    from pydantic import ValidationError

    from cicd_tools.pointer.model import CodeAssetPointer, utc_now_iso

    if result.name_mismatch:
        # Never publish another asset's version under this name (nor rewrite the other asset's pointer).
        raise AssetNameMismatch(result)

    try:
        return CodeAssetPointer(
            assetName=result.name,
            version=result.version,
            assetId=result.asset_id,
            requestedVersion=result.requested_version,
            contentHash=result.content_hash,
            workspaceName=workspace.workspace,
            resourceGroup=workspace.resource_group,
            subscriptionId=workspace.subscription_id,
            registeredAtUtc=utc_now_iso(),  # the SDK has just returned
            **run_provenance(environ),
        )
    except ValidationError as exc:
        raise ContractViolation(
            f"cannot publish {result.name}:{result.version}: {exc.errors()[0]['msg']}",
            code="PointerInvalid",
        ) from None


def publish_registration(
    container: ContainerClient,
    result: RegistrationResult,
    workspace: WorkspaceRef,
    version_exists: Callable[[str, str], bool],
    environ: Mapping[str, str] | None = None,
) -> PublishResult:
    """Publish ``result`` after the workspace confirms it holds that version (a GET of the version).

    Raises: ContractViolation (exit 5) when the workspace does not hold the version; ConflictError; AzureError.
    """
    from cicd_tools.pointer.contract import publish_pointer

    pointer = pointer_from_registration(result, workspace, environ)
    return publish_pointer(container, pointer, version_exists=version_exists)
