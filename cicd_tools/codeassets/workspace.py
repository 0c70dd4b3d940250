"""Read-only Azure ML workspace lookups over plain ARM REST: code versions by content hash and by number.

``code plan`` and the pointer's "does the workspace hold this version" check use this instead of
azure.ai.ml, so they start fast and work even when the SDK's install is broken. The requests are the
ones the SDK itself makes (AZURE_FACTS.md §1), with the same api-version.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cicd_tools import __version__
from cicd_tools.codeassets.hashing import HASH_VERSION
from cicd_tools.settings.resolve import PUBLIC_ARM, Settings
from cicd_tools.support.errors import CicdError, PermissionMissing, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core import PipelineClient
    from azure.core.credentials import TokenCredential
    from azure.core.rest import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

# The api-version azure-ai-ml 1.24 … 1.35 sends for code versions.
CODE_API_VERSION = "2023-04-01"
_CODE_ID_RE = re.compile(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/?]+)$", re.IGNORECASE)
_MAX_PAGES = 50


@dataclass(frozen=True)
class WorkspaceRef:
    """An Azure ML workspace and the ARM endpoint that serves it."""

    subscription_id: str
    resource_group: str
    workspace: str
    arm_endpoint: str = PUBLIC_ARM

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkspaceRef:
        """Raises: ConfigError naming each missing flag / variable."""
        settings.require("subscription_id", "resource_group", "workspace")
        assert settings.subscription_id and settings.resource_group and settings.workspace
        return cls(settings.subscription_id, settings.resource_group, settings.workspace,
                   settings.arm_endpoint.rstrip("/"))

    @property
    def path(self) -> str:
        """The workspace's ARM id (``{WS}`` in AZURE_FACTS.md)."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    def code_version_id(self, name: str, version: str) -> str:
        """The full ARM id of a code version: what a job's ``codeId`` and the pointer's ``assetId`` hold."""
        return f"{self.path}/codes/{name}/versions/{version}"

    @property
    def scope(self) -> str:
        """The token scope for this ARM endpoint."""
        return self.arm_endpoint.rstrip("/") + "/.default"


@dataclass(frozen=True)
class CodeVersionInfo:
    """What the workspace says about one code version."""

    id: str
    name: str
    version: str
    code_uri: str | None
    hash_sha256: str | None
    hash_version: str | None
    created_at: str | None

    @classmethod
    def from_arm(cls, doc: dict[str, Any]) -> CodeVersionInfo:
        """Parse a ``CodeVersionResource``; name and version come from the id, as the SDK reads them."""
        arm_id = str(doc.get("id") or "")
        match = _CODE_ID_RE.search(arm_id)
        if not match:
            raise CicdError(f"the workspace returned a code version without a valid id: {arm_id!r}",
                            code="MalformedResponse")
        props = doc.get("properties") or {}
        inner = props.get("properties") or {}
        hash_version = inner.get("hash_version")
        system = doc.get("systemData") or {}
        return cls(
            id=arm_id,
            name=match["name"],
            version=match["version"],
            code_uri=props.get("codeUri"),
            hash_sha256=inner.get("hash_sha256"),
            hash_version=None if hash_version is None else str(hash_version),
            created_at=system.get("createdAt"),
        )


class WorkspaceCodes:
    """The two code-version reads the toolkit needs, with a token credential over ARM."""

    def __init__(
        self,
        workspace: WorkspaceRef,
        credential: TokenCredential,
        *,
        client: PipelineClient[Any, Any] | None = None,
        retry: Callable[[str, Callable[[], Any]], Any] | None = None,
    ) -> None:
        """``retry``: the command's retry policy and deadline (an ``adf.client.ArmCalls``); each request then
        goes through it (azure-core's own retries off), else through azure-core's RetryPolicy."""
        self.workspace = workspace
        self._client = client or _pipeline_client(workspace, credential)
        self._retry = retry

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WorkspaceCodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find_by_hash(self, name: str, sha256: str, hash_version: str = HASH_VERSION) -> list[CodeVersionInfo]:
        """Code versions whose content hash is ``sha256``: the lookup the SDK dedups with.

        The service matches regardless of name (``name`` only forms the URL), so a hit can be another asset's;
        each hit's name comes from its ARM id, as the SDK reads it.

        Raises: AzureError (classified) when the workspace cannot be read.
        """
        url: str | None = (
            f"{self.workspace.arm_endpoint}{self.workspace.path}/codes/{name}/versions"
            f"?api-version={CODE_API_VERSION}&hash={sha256}&hashVersion={hash_version}"
        )
        found: list[CodeVersionInfo] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            doc = self._get_json(url, what=f"looking up code asset {name!r} by content hash")
            assert doc is not None  # a list never answers 404 (an unknown name is an empty list)
            found.extend(CodeVersionInfo.from_arm(item) for item in doc.get("value") or [])
            url = doc.get("nextLink") or None
        return found

    def get_version(self, name: str, version: str) -> CodeVersionInfo | None:
        """The code version ``name:version``, or None when the workspace does not hold it.

        Raises: AzureError (classified) for anything but 404.
        """
        url = (
            f"{self.workspace.arm_endpoint}{self.workspace.code_version_id(name, version)}"
            f"?api-version={CODE_API_VERSION}"
        )
        doc = self._get_json(url, what=f"reading code asset {name}:{version}", missing_ok=True)
        return None if doc is None else CodeVersionInfo.from_arm(doc)

    def version_exists(self, name: str, version: str) -> bool:
        """Whether the workspace holds ``name:version`` (the pointer refuses anything else)."""
        return self.get_version(name, version) is not None

    def send(self, request: HttpRequest, what: str) -> HttpResponse:
        """Send one ARM request under the retry policy this reader was given."""
        return _send(self._client, request, self._retry, what)

    def _get_json(self, url: str, *, what: str, missing_ok: bool = False) -> dict[str, Any] | None:
        from azure.core.exceptions import AzureError as SdkAzureError
        from azure.core.rest import HttpRequest

        request = HttpRequest("GET", url, headers={"Accept": "application/json"})
        try:
            response = self.send(request, what)
        except SdkAzureError as exc:
            raise workspace_error(exc, what=what) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise workspace_error(_http_error(response), what=what)
        try:
            doc = response.json()
        except ValueError:
            raise CicdError(
                f"{what}: the workspace answered {response.status_code} with a body that is not JSON",
                code="MalformedResponse",
            ) from None
        if not isinstance(doc, dict):
            raise CicdError(f"{what}: expected a JSON object", code="MalformedResponse")
        return doc


RETRYABLE = (429, 500, 502, 503, 504)


def _send(client: PipelineClient[Any, Any], request: HttpRequest, retry: Any, what: str) -> HttpResponse:
    """One request; with ``retry``, through the command's policy: 429/5xx and dropped connections are retried
    (and classified) there, every other answer comes back as it is."""
    if retry is None:
        first: HttpResponse = client.send_request(request)
        return first

    def attempt() -> HttpResponse:
        response: HttpResponse = client.send_request(request, retry_total=0)
        if response.status_code in RETRYABLE:
            raise _http_error(response)
        return response

    answer: HttpResponse = retry(what, attempt)
    return answer


def _http_error(response: HttpResponse) -> Exception:
    from azure.core.exceptions import HttpResponseError

    try:
        from azure.mgmt.core.exceptions import ARMErrorFormat

        return HttpResponseError(response=response, error_format=ARMErrorFormat)
    except ImportError:  # pragma: no cover - azure-mgmt-core comes with azure-ai-ml
        return HttpResponseError(response=response)


def workspace_error(exc: BaseException, *, what: str) -> CicdError:
    """Classify an ARM failure; a missing workspace role gets a workspace-specific fix."""
    from enum import Enum

    from cicd_tools.support.azerrors import classify_azure_error, error_code_of

    raw = getattr(exc, "error_code", None)
    if isinstance(raw, Enum):
        # azure-storage-blob sets a StorageErrorCode enum, whose str() on Python 3.11 is
        # 'StorageErrorCode.AUTHORIZATION_FAILURE': hand the classifier Azure's own code.
        exc.error_code = raw.value  # type: ignore[attr-defined]
    code = error_code_of(exc)
    if code == "AuthorizationFailed":
        first = str(exc).splitlines()[0] if str(exc) else code
        return PermissionMissing(
            f"{what} was refused (403 AuthorizationFailed): {first}",
            hint="Assign 'AzureML Data Scientist' (or Contributor) on the workspace to the CI identity.",
            code=code,
        )
    return classify_azure_error(exc, what=what)


def _pipeline_client(workspace: WorkspaceRef, credential: TokenCredential) -> PipelineClient[Any, Any]:
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import (
        BearerTokenCredentialPolicy,
        HeadersPolicy,
        NetworkTraceLoggingPolicy,
        RetryPolicy,
        UserAgentPolicy,
    )

    if not workspace.arm_endpoint.lower().startswith("https://"):
        # Bearer tokens are refused on http:// (AZURE_FACTS.md §1): fail with a reason, not a stack.
        raise UsageError(f"the ARM endpoint {workspace.arm_endpoint} must be https://",
                         hint="Use the sandbox's HTTPS endpoint (`cicd-tools sandbox env`).")
    policies = [
        HeadersPolicy(),
        UserAgentPolicy(f"cicd-tools/{__version__}"),
        RetryPolicy(retry_total=4, retry_backoff_factor=0.5),
        BearerTokenCredentialPolicy(credential, workspace.scope),
        NetworkTraceLoggingPolicy(),
    ]
    return PipelineClient(base_url=workspace.arm_endpoint, policies=policies)


def discover_cloud_metadata(arm_endpoint: str, *, timeout: float = 10.0) -> dict[str, str]:
    """The six ``cloud_metadata`` keys MLClient needs for a non-public cloud, from ``/metadata/endpoints``.

    Falls back to values derived from the ARM endpoint when the metadata cannot be read.
    """
    import requests

    arm = arm_endpoint.rstrip("/")
    metadata: dict[str, Any] = {}
    try:
        response = requests.get(f"{arm}/metadata/endpoints?api-version=2022-09-01", timeout=timeout)
        if response.ok:
            body = response.json()
            metadata = body[0] if isinstance(body, list) and body else body if isinstance(body, dict) else {}
    except (requests.RequestException, ValueError) as exc:
        log.debug("no cloud metadata at %s: %s", arm, exc)
    suffixes = metadata.get("suffixes") or {}
    authentication = metadata.get("authentication") or {}
    resource_manager = str(metadata.get("resourceManager") or arm).rstrip("/") + "/"
    return {
        "azure_portal": str(metadata.get("portal") or resource_manager),
        "resource_manager": resource_manager,
        "active_directory": str(authentication.get("loginEndpoint") or "https://login.microsoftonline.com/"),
        # Only AML data-plane calls (not code registration) use this; ARM is the safe stand-in.
        "aml_resource_id": resource_manager,
        "storage_endpoint": str(suffixes.get("storage") or "core.windows.net"),
        "registry_discovery_endpoint": resource_manager,
    }
