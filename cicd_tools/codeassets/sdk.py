"""The azure.ai.ml boundary: the only module that imports the SDK (lazily), builds MLClient, calls ``_code``.

``MLClient._code.create_or_update`` is private API; it is guarded here and every SDK failure is
translated into the toolkit's error tree, naming the installed SDK version where that helps.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.codeassets.workspace import WorkspaceRef, discover_cloud_metadata, workspace_error
from cicd_tools.settings.resolve import PUBLIC_ARM
from cicd_tools.support.errors import CicdError, ContractViolation, EnvironmentProblem, PermissionMissing

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

ASSET_PATH_MESSAGE = "Asset paths cannot be updated"


class VersionConflict(ContractViolation):
    """The requested version already exists in the workspace with other content."""

    default_hint = (
        "Request a version that does not exist yet (the CI build id does that), or pass --unique; "
        "`cicd-tools code plan` shows this before anything is uploaded."
    )


@dataclass(frozen=True)
class SdkCode:
    """What ``create_or_update`` returned, read defensively (attribute names vary across SDK versions)."""

    name: str
    version: str
    id: str
    path: str | None
    hash_sha256: str | None


def installed_sdk_version() -> str:
    """The installed azure-ai-ml version, or ``not installed``."""
    try:
        return metadata.version("azure-ai-ml")
    except metadata.PackageNotFoundError:
        return "not installed"


def _import_error(exc: BaseException) -> EnvironmentProblem:
    text = str(exc)
    if "marshmallow" in text or "FieldInstanceResolutionError" in text:
        return EnvironmentProblem(
            f"azure-ai-ml {installed_sdk_version()} cannot be imported: {text} (marshmallow 4 is installed;"
            " azure-ai-ml needs marshmallow<4)",
            hint="pip install 'marshmallow>=3.18,<4'  (or `cicd-tools doctor` for the full fix)",
            code="SdkImportFailed",
        )
    return EnvironmentProblem(
        f"azure-ai-ml {installed_sdk_version()} cannot be imported: {type(exc).__name__}: {text}",
        code="SdkImportFailed",
    )


def load_code_class() -> Any:
    """``azure.ai.ml`` ``Code``: public export first, then the private module every version has."""
    try:
        from azure.ai.ml.entities import Code  # not exported by 1.24 … 1.35

        return Code
    except ImportError:
        pass
    try:
        from azure.ai.ml.entities._assets import Code

        return Code
    except ImportError as exc:
        raise _import_error(exc) from None


def cloud_kwargs(arm_endpoint: str) -> dict[str, Any]:
    """MLClient keyword arguments for a non-public ARM endpoint (empty for public Azure)."""
    arm = arm_endpoint.rstrip("/")
    if arm == PUBLIC_ARM:
        return {}
    # azure-ai-ml keeps clouds in a process-wide table and silently keeps the first metadata registered
    # under a name: one name per endpoint, so a second sandbox (another port) is not sent to the first.
    name = "CicdCloud" + hashlib.sha256(arm.encode()).hexdigest()[:10]
    return {"cloud": name, "cloud_metadata": discover_cloud_metadata(arm)}


def build_ml_client(credential: TokenCredential, workspace: WorkspaceRef, *, show_progress: bool = False) -> Any:
    """An MLClient for ``workspace`` that has ``_code``.

    Raises: EnvironmentProblem when azure.ai.ml cannot be imported or lacks ``MLClient._code``.
    """
    try:
        from azure.ai.ml import MLClient
    except Exception as exc:  # ImportError, or the AttributeError a half-compatible marshmallow raises
        raise _import_error(exc) from None
    kwargs: dict[str, Any] = {"show_progress": show_progress, "enable_telemetry": False}
    kwargs.update(cloud_kwargs(workspace.arm_endpoint))
    client = MLClient(
        credential, workspace.subscription_id, workspace.resource_group, workspace.workspace, **kwargs
    )
    require_code_operations(client)
    return client


def require_code_operations(client: Any) -> Any:
    """``client._code``, or an EnvironmentProblem naming the installed SDK version."""
    operations = getattr(client, "_code", None)
    if operations is None or not callable(getattr(operations, "create_or_update", None)):
        raise EnvironmentProblem(
            f"the installed azure-ai-ml {installed_sdk_version()} has no MLClient._code.create_or_update"
            " (a private API cicd-tools relies on)",
            hint="Install a tested SDK: pip install -c constraints.txt 'azure-ai-ml>=1.24,<2'",
            code="SdkMissingCodeOperations",
        )
    return operations


def create_code(client: Any, name: str, version: str, path: Path) -> SdkCode:
    """Register ``path`` as ``name:version`` through the SDK; the returned version is the truth.

    Raises: VersionConflict (the version exists with other content), PermissionMissing, AzureError,
    EnvironmentProblem.
    """
    from cicd_tools.support.progress import heartbeat
    from cicd_tools.support.terminal import plain_sdk_console

    code_class = load_code_class()
    operations = require_code_operations(client)
    files, size = _upload_size(path)
    try:
        # The SDK hashes, maybe uploads, then registers: say what we wait for, keep its escape codes out of logs.
        with heartbeat(f"registering {name}:{version} from {path} (upload unless Azure ML has this content)",
                       logger=log, total_items=files, total_bytes=size), plain_sdk_console():
            result = operations.create_or_update(code_class(name=name, version=version, path=str(path)))
    except Exception as exc:
        raise translate_sdk_error(exc, name=name, version=version) from None
    return read_sdk_code(result, requested_name=name)


def _upload_size(path: Path) -> tuple[int | None, int | None]:
    """How many files and bytes the SDK would upload (None when the folder cannot be listed: it will say why)."""
    from cicd_tools.codeassets.hashing import collect_code_files

    try:
        listed = collect_code_files(path)
    except CicdError:
        return None, None
    return len(listed.entries), sum(entry.size for entry in listed.entries)


def read_sdk_code(result: Any, *, requested_name: str) -> SdkCode:
    """Read name, version, ARM id, codeUri and the service's hash off a returned ``Code``."""
    version = getattr(result, "version", None)
    arm_id = getattr(result, "id", None)
    if version is None or not arm_id:
        raise CicdError(
            f"azure-ai-ml {installed_sdk_version()} returned a code asset without a version or id"
            f" (version={version!r}, id={arm_id!r})",
            code="SdkResultIncomplete",
        )
    properties = getattr(result, "properties", None) or {}
    sha = properties.get("hash_sha256") if isinstance(properties, dict) else None
    return SdkCode(
        name=str(getattr(result, "name", None) or requested_name),
        version=str(version),
        id=str(arm_id),
        path=None if getattr(result, "path", None) is None else str(result.path),
        hash_sha256=None if sha is None else str(sha),
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def translate_sdk_error(exc: BaseException, *, name: str, version: str) -> CicdError:
    """Map what ``create_or_update`` raised to a CicdError (walking the exception chain for Azure codes)."""
    from cicd_tools.support.azerrors import error_code_of

    if isinstance(exc, CicdError):
        return exc
    chain = _chain(exc)
    if any(type(e).__name__ == "AssetPathException" or ASSET_PATH_MESSAGE in str(e) for e in chain):
        # azure-core 1.41's error text no longer equals the SDK's constant, so the raw HttpResponseError
        # arrives; older combinations raise AssetPathException. Same meaning either way.
        return VersionConflict(
            f"{name}:{version} already exists in the workspace with other content"
            f" (Azure ML: {ASSET_PATH_MESSAGE.lower()}); nothing was registered",
            code="VersionExistsWithOtherContent",
        )
    for item in chain:
        code = error_code_of(item)
        if code:
            return workspace_error(item, what=f"registering {name}:{version}")
    text = " ".join(str(e) for e in chain)
    if "Ensure that you have been assigned both Storage Blob Data Reader" in text:
        return PermissionMissing(
            f"registering {name}:{version}: the workspace storage refused the upload (missing data role)",
            code="AuthorizationPermissionMismatch",
        )
    if type(exc).__name__ == "EmptyDirectoryError":
        from cicd_tools.support.errors import UsageError

        return UsageError(f"{name}: the code folder is empty: {exc}", code="empty")
    for item in chain:
        if type(item).__module__.startswith("azure.core") or type(item).__module__.startswith("azure.identity"):
            return workspace_error(item, what=f"registering {name}:{version}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CicdError(
        f"azure-ai-ml {installed_sdk_version()} failed to register {name}:{version}: {type(exc).__name__}: {first}",
        code=type(exc).__name__,
    )
