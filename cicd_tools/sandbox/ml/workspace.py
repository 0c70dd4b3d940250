"""Microsoft.MachineLearningServices workspace code versions, as azure-ai-ml meets them (AZURE_FACTS.md §1).

What the real MLClient does in ``_code.create_or_update`` and what this serves:

1. ``GET {WS}/codes/{name}/versions?hash=H&hashVersion=202208``: 200 with the code versions holding that
   content *regardless of name*, as the REST spec documents the ``hash`` filter (``{"value": []}`` for an
   unknown name: a 404 would make the SDK raise). A control switch (``PUT
   /_sandbox/machinelearning/code-hash-scope``) narrows the filter to *name*, the behaviour an earlier stub
   assumed, so the toolkit can be tested against both;
2. on a hit, ``GET {WS}/codes/{hitName}/versions/{v}``: the SDK reads name AND version of the first hit from
   its ARM id and returns that existing asset (dedup, possibly under another name);
3. on a miss, ``POST …/versions/{v}/startPendingUpload``: a fresh container in the workspace storage
   account and a container SAS signed with the account key, reached through the blob front, so the
   upload meets the firewall like the real workspace storage (a key-signed SAS carries no identity:
   RBAC does not apply to it, ``allowSharedKeyAccess: false`` refuses it);
4. ``PUT {WS}/codes/{name}/versions/{v}``: creates (201); the same content again is idempotent (200);
   other content under an existing version is 400 UserError "Asset paths cannot be updated.".

Also ``GET {WS}`` (its ``discoveryUrl``: ``run_history.py``); the datastores are ``datastores.py``.
Every call needs an ARM bearer token whose principal holds a role on the workspace.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from cicd_tools.sandbox.armbase import authenticate, authorize, check_resource_group
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response
from cicd_tools.sandbox.world.topology import topology

PROVIDER = "Microsoft.MachineLearningServices"
WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
      rf"/providers/{re.escape(PROVIDER)}/workspaces/(?P<ws>[^/]+)")
CODE = WS + r"/codes/(?P<name>[^/]+)"
_API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
ASSET_PATH_MESSAGE = "Asset paths cannot be updated."
SAS_LIFETIME = dt.timedelta(hours=2)
DATASTORE = "workspaceblobstore"
T = TypeVar("T")


@dataclass
class CodeVersion:
    """One stored code version."""

    name: str
    version: str
    code_uri: str | None
    properties: dict[str, str]
    description: str | None
    tags: dict[str, str]
    is_anonymous: bool
    created_at: str
    created_by: str
    sequence: int

    @property
    def hash_sha256(self) -> str | None:
        return self.properties.get("hash_sha256")


@dataclass
class AmlState:
    """Code versions per (workspace, name), pending uploads, behind one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: dict[tuple[str, str], dict[str, CodeVersion]] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)  # pendingUploadId -> container
    created: set[str] = field(default_factory=set)  # containers made on Azurite (the datastore's)
    sequence: int = 0
    hash_scope: str = "workspace"  # the hash filter: "workspace" (documented: any name) or "name"


_STATES: weakref.WeakKeyDictionary[Any, AmlState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def aml_state(hub: Hub) -> AmlState:
    """The AML state of this sandbox (kept beside the hub, so the shared CloudState stays untouched)."""
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = AmlState()
        return state


def reset_aml_state(hub: Hub) -> None:
    """Forget every code version (call from the sandbox's reset)."""
    with _STATES_LOCK:
        _STATES[hub.state] = AmlState()


reset = reset_aml_state  # the provider reset hook ``Sandbox.reset`` calls


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _user_error(status: int, message: str, inner: str | None = None) -> HttpError:
    """The Azure ML service's error body: ``UserError`` with an inner code."""
    body: dict[str, Any] = {"error": {"code": "UserError", "message": message, "details": [],
                                      "innerError": {"code": inner} if inner else None}}
    return HttpError(json_response(status, body))


def _workspace_id(hub: Hub, ws: str) -> str:
    return f"{hub.layout.resource_group_id}/providers/{PROVIDER}/workspaces/{ws}"


def _target(req: Request, hub: Hub, action: str) -> tuple[str, dict[str, Any]]:
    """Authenticate, check the api-version, the workspace and the role. Raises: HttpError."""
    claims = authenticate(req, hub)
    version = req.param("api-version")
    if not version or not _API_VERSION_RE.match(version):
        raise HttpError(arm_error(400, "MissingApiVersionParameter",
                                  "The api-version query parameter (?api-version=) is required for all requests."))
    check_resource_group(req, hub, req.params["sub"], req.params["rg"])
    ws = req.params["ws"]
    if ws.lower() != hub.layout.workspace.lower():
        raise HttpError(arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{ws}' under "
                                  f"resource group '{hub.layout.resource_group}' was not found. For more details "
                                  "please go to https://aka.ms/ARMResourceNotFoundFix"))
    authorize(hub, claims, _workspace_id(hub, hub.layout.workspace), f"{PROVIDER}/workspaces/{action}")
    return hub.layout.workspace, claims


# -- what code and model versions share ------------------------------------------------------------------
def system_data(created_at: str, created_by: str) -> dict[str, Any]:
    """A version's ``systemData``: created and last modified once, by the caller's principal."""
    return {"createdAt": created_at, "createdBy": created_by, "createdByType": "Application",
            "lastModifiedAt": created_at, "lastModifiedBy": created_by, "lastModifiedByType": "Application"}


def version_properties(req: Request, name: str) -> dict[str, Any]:
    """A version PUT's ``properties``, once the asset name passes Azure ML's rule. Raises: HttpError (400)."""
    if not _NAME_RE.match(name):
        raise _user_error(400, f"The asset name '{name}' is invalid: it must match "
                          "^[a-zA-Z0-9][a-zA-Z0-9\\-_]{0,254}$.", "ValidationError")
    body = req.json()
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise _user_error(400, "The request body must hold 'properties'.", "ValidationError")
    return props


def stored_version(lock: threading.Lock, versions: dict[tuple[str, str], dict[str, T]], ws: str, name: str,
                   version: str, what: str) -> T:
    """The stored version, or the service's 404 naming ``what`` ("code asset", "model"). Raises: HttpError."""
    with lock:
        item = versions.get((ws, name), {}).get(version)
    if item is None:
        raise _user_error(404, f"Could not find {what} version {name}:{version} in workspace {ws}.", "NotFound")
    return item


def delete_stored(lock: threading.Lock, versions: dict[tuple[str, str], dict[str, T]], ws: str, name: str,
                  version: str) -> Response:
    """DELETE of a version: 200 when it was there, 204 when it was not."""
    with lock:
        removed = versions.get((ws, name), {}).pop(version, None)
    return Response(200 if removed else 204)


def page_response(req: Request, hub: Hub, items: Sequence[T], skip: int, top: int,
                  render: Callable[[T], dict[str, Any]]) -> Response:
    """``items[skip:skip + top]`` rendered, with a ``nextLink`` carrying ``$skipToken`` while more remain."""
    page = items[skip:skip + top]
    body: dict[str, Any] = {"value": [render(i) for i in page]}
    if skip + top < len(items):
        query = [(k, v) for k, v in req.query if k != "$skipToken"] + [("$skipToken", str(skip + top))]
        body["nextLink"] = f"{hub.arm_endpoint}{req.path}?{urlencode(query)}"
    return json_response(200, body)


def _version_body(hub: Hub, ws: str, item: CodeVersion) -> dict[str, Any]:
    return {
        "id": f"{_workspace_id(hub, ws)}/codes/{item.name}/versions/{item.version}",
        "name": item.version,
        "type": f"{PROVIDER}/workspaces/codes/versions",
        "properties": {
            "description": item.description,
            "tags": dict(item.tags),
            "properties": dict(item.properties),
            "isArchived": False,
            "isAnonymous": item.is_anonymous,
            "codeUri": item.code_uri,
            "provisioningState": "Succeeded",
        },
        "systemData": system_data(item.created_at, item.created_by),
    }


# -- code versions ---------------------------------------------------------------------------------------
def list_versions(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "codes/versions/read")
    name, wanted, wanted_version = req.params["name"], req.param("hash"), req.param("hashVersion")
    state = aml_state(hub)
    with state.lock:
        if wanted and state.hash_scope == "workspace":
            # "return CodeVersion assets with specified content hash value, regardless of name" (CodeVersions_List)
            items = [i for (w, _), versions in state.versions.items() if w == ws for i in versions.values()]
        else:
            items = list(state.versions.get((ws, name), {}).values())
    if wanted:
        items = [i for i in items if i.hash_sha256 == wanted
                 and (not wanted_version or str(i.properties.get("hash_version")) == wanted_version)]
    items.sort(key=lambda i: i.sequence, reverse=True)  # newest first
    skip = int(req.param("$skipToken") or 0)
    top = int(req.param("$top") or 100)
    return page_response(req, hub, items, skip, top, lambda i: _version_body(hub, ws, i))


def _stored(hub: Hub, ws: str, name: str, version: str) -> CodeVersion:
    state = aml_state(hub)
    return stored_version(state.lock, state.versions, ws, name, version, "code asset")


def get_version(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "codes/versions/read")
    return json_response(200, _version_body(hub, ws, _stored(hub, ws, req.params["name"], req.params["version"])))


def delete_version(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "codes/versions/delete")
    state = aml_state(hub)
    return delete_stored(state.lock, state.versions, ws, req.params["name"], req.params["version"])


def put_version(req: Request, hub: Hub) -> Response:
    ws, claims = _target(req, hub, "codes/versions/write")
    name, version = req.params["name"], req.params["version"]
    props = version_properties(req, name)
    code_uri = props.get("codeUri")
    if code_uri is not None and not isinstance(code_uri, str):
        raise _user_error(400, "'codeUri' must be a string.", "ValidationError")
    # The SDK sends hash_version as a number (1.35) or a string (1.24); the service stores strings.
    extra = {str(k): str(v) for k, v in (props.get("properties") or {}).items() if v is not None}
    state = aml_state(hub)
    with state.lock:
        versions = state.versions.setdefault((ws, name), {})
        current = versions.get(version)
        if current is not None:
            same = current.code_uri == code_uri or (
                current.hash_sha256 is not None and current.hash_sha256 == extra.get("hash_sha256"))
            if not same:
                raise _user_error(400, ASSET_PATH_MESSAGE, "Conflict")
            current.description = props.get("description", current.description)
            current.tags = dict(props.get("tags") or current.tags)
            return json_response(200, _version_body(hub, ws, current))
        state.sequence += 1
        item = CodeVersion(
            name=name, version=version, code_uri=code_uri, properties=extra,
            description=props.get("description"), tags=dict(props.get("tags") or {}),
            is_anonymous=bool(props.get("isAnonymous", False)), created_at=_now(),
            created_by=str(claims.get("name") or claims.get("oid") or "unknown"), sequence=state.sequence,
        )
        versions[version] = item
    return json_response(201, _version_body(hub, ws, item))


def start_pending_upload(req: Request, hub: Hub) -> Response:
    _target(req, hub, "codes/versions/write")
    body = req.json() or {}
    if not isinstance(body, dict):
        raise _user_error(400, "The request body must be a JSON object.", "ValidationError")
    kind = body.get("pendingUploadType") or "TemporaryBlobReference"
    if kind != "TemporaryBlobReference":
        raise _user_error(400, "TemporaryBlobReference is the only supported pendingUploadType.",
                          "ValidationError")
    upload_id = str(body.get("pendingUploadId") or uuid.uuid4())
    account = hub.layout.workspace_storage_account
    state = aml_state(hub)
    with state.lock:
        container = state.containers.get(upload_id)
        if container is None:
            # One container per upload: the SDK uploads to the container's root as `{folder name}/...`.
            container = state.containers[upload_id] = f"code-{uuid.uuid4().hex}"
            create = True
        else:
            create = False
    if create:
        _create_container(hub, account, container)
    blob_uri = f"{hub.blob_endpoint_of(account)}/{container}"
    return json_response(200, {
        "blobReferenceForConsumption": {
            "blobUri": blob_uri,
            "storageAccountArmId": hub.layout.account_id(account),
            "credential": {"credentialType": "SAS",
                           "sasUri": f"{blob_uri}?{_container_sas(hub, account, container)}"},
        },
        "pendingUploadId": upload_id,
        "pendingUploadType": "TemporaryBlobReference",
    })


def _container_sas(hub: Hub, account: str, container: str, *, lifetime: dt.timedelta = SAS_LIFETIME) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = dt.datetime.now(dt.UTC)
    return generate_container_sas(
        account, container, account_key=hub.account_key(account),
        permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, list=True),
        start=now - dt.timedelta(minutes=5), expiry=now + lifetime,
    )


def _create_container(hub: Hub, account: str, container: str) -> None:
    """Create the upload container straight on Azurite: the service is not behind the firewall."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    info = hub.info()
    service = BlobServiceClient(
        f"https://127.0.0.1:{info['azuritePort']}/{account}",
        credential={"account_name": account, "account_key": hub.account_key(account)},
        connection_verify=str(info["caBundle"]),
    )
    try:
        service.create_container(container)
    except ResourceExistsError:
        pass
    finally:
        service.close()


# -- control switches (served under /_sandbox/machinelearning/ by control.py) -----------------------------
HASH_SCOPES = ("workspace", "name")


def get_hash_scope(req: Request, hub: Hub) -> Response:
    return json_response(200, {"scope": aml_state(hub).hash_scope})


def set_hash_scope(req: Request, hub: Hub) -> Response:
    """``{"scope": "workspace"|"name"}``: what the code-version hash filter matches (reset: workspace)."""
    body = req.json()
    scope = body.get("scope") if isinstance(body, dict) else None
    if scope not in HASH_SCOPES:
        raise ValueError(f"scope must be one of {', '.join(HASH_SCOPES)}, got {scope!r}")
    state = aml_state(hub)
    with state.lock:
        state.hash_scope = scope
    return json_response(200, {"scope": scope})


# -- the workspace and its default datastore -------------------------------------------------------------
def get_workspace(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "read")
    layout = hub.layout
    return json_response(200, {
        "id": _workspace_id(hub, ws),
        "name": ws,
        "type": f"{PROVIDER}/workspaces",
        "location": layout.location,
        "kind": "Default",
        "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, ws))},
        "properties": {
            "friendlyName": ws,
            "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{layout.subscription_id}/{ws}")),
            "storageAccount": layout.account_id(layout.workspace_storage_account),
            "discoveryUrl": f"{hub.arm_endpoint}/discovery",
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
            # accessKey | identity, fixed at creation (sandbox/topology.py; the key-datastores scenario).
            "systemDatastoresAuthMode": topology(hub).snapshot().system_datastores_auth_mode,
        },
    })


def _datastore_container(hub: Hub, ws: str) -> str:
    return f"azureml-blobstore-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{hub.layout.subscription_id}/{ws}')}"


ARTIFACT_CONTAINER = "azureml"  # the workspaceartifactstore's container: run logs, ExperimentRun/dcid.{run}/…


_VERSION = CODE + r"/versions/(?P<version>[^/]+)"
routes = [
    Route("GET", CODE + r"/versions", list_versions),
    Route("GET", _VERSION, get_version),
    Route("PUT", _VERSION, put_version),
    Route("DELETE", _VERSION, delete_version),
    Route("POST", _VERSION + r"/startPendingUpload", start_pending_upload),
    Route("GET", WS, get_workspace),
]  # the datastores: ``datastores.py``
