"""Microsoft.MachineLearningServices workspace models: containers and versions, as azure-ai-ml meets them.

What azure-ai-ml 1.35.2 sends for ``ml_client.models.create_or_update(Model(type="custom_model", …))``
(observed against this sandbox, request log):

1. ``GET {WS}/models/{name}/versions?$orderBy=createdtime desc&$top=1`` (is the latest version an
   evaluator?): an unknown name answers ``200 {"value": []}``, which the SDK reads as "no model";
2. without a version, ``GET {WS}/models/{name}`` for the container's ``nextVersion`` (404 → ``1``);
3. a local ``path`` is uploaded to the default datastore (``GET datastores/workspaceblobstore``,
   ``POST …/listSecrets``) at ``https://{account}.blob.{storage suffix}``: a host name only DNS can
   resolve, so the sandbox serves ``azureml://datastores/…/paths/…`` model paths (the files uploaded
   beforehand, as ``cicd-tools model mirror`` does), not local ones;
4. ``PUT {WS}/models/{name}/versions/{v}``: 201 on create; the same ``modelUri`` again is idempotent
   (200); another ``modelUri`` under an existing version is 400 "Asset paths cannot be updated.".

The list filters as the REST spec (2025-09-01 ``ModelVersions_List``) documents: ``tags`` (comma-separated
``name`` or ``name=value``), ``version``, ``properties``, ``$orderBy`` (``createdtime [asc|desc]``),
``$top``, ``$skipToken``. The response always carries ``properties.flavors`` (a dict): the SDK's
``Model._from_rest_object`` needs it. There is **no** workspace ``models/…/startPendingUpload`` in the
spec (it exists for code versions only), so the sandbox answers that path "not implemented".
Every call needs an ARM bearer token whose principal holds a role on the workspace; faults from the
control endpoint's fault table apply (service ``arm``, path ``/models/``).
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.sandbox.ml.workspace import (
    ASSET_PATH_MESSAGE,
    WS,
    _now,
    _target,
    _user_error,
    _workspace_id,
    delete_stored,
    page_response,
    stored_version,
    system_data,
    version_properties,
)
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response

MODEL = WS + r"/models/(?P<name>[^/]+)"
_VERSION = MODEL + r"/versions/(?P<version>[^/]+)"
_MODEL_URI_RE = re.compile(r"^(azureml://|https://|wasbs://|abfss://|runs:/|models:/)", re.IGNORECASE)
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model", "CustomModel", "MLFlowModel", "TritonModel")


@dataclass
class ModelVersion:
    """One stored model version (the request's ``properties`` as the service keeps them)."""

    name: str
    version: str
    properties: dict[str, Any]
    created_at: str
    created_by: str
    sequence: int


@dataclass
class ModelsState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: dict[tuple[str, str], dict[str, ModelVersion]] = field(default_factory=dict)
    sequence: int = 0


_STATES: weakref.WeakKeyDictionary[Any, ModelsState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def models_state(hub: Hub) -> ModelsState:
    """The model registry of this sandbox (kept beside the hub, like ``aml_state``)."""
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = ModelsState()
        return state


def reset(hub: Hub) -> None:
    """Forget every model (``Sandbox.reset`` calls this)."""
    with _STATES_LOCK:
        _STATES[hub.state] = ModelsState()


def _version_body(hub: Hub, ws: str, item: ModelVersion) -> dict[str, Any]:
    props = dict(item.properties)
    props.setdefault("description", None)
    props["tags"] = dict(props.get("tags") or {})
    props["properties"] = dict(props.get("properties") or {})
    props["flavors"] = dict(props.get("flavors") or {})  # the SDK reads it as a dict (AZURE_FACTS.md §1)
    props.setdefault("modelType", "custom_model")
    props.setdefault("jobName", None)
    props["isArchived"] = bool(props.get("isArchived", False))
    props["isAnonymous"] = bool(props.get("isAnonymous", False))
    props["provisioningState"] = "Succeeded"
    return {
        "id": f"{_workspace_id(hub, ws)}/models/{item.name}/versions/{item.version}",
        "name": item.version,
        "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
        "properties": props,
        "systemData": system_data(item.created_at, item.created_by),
    }


def _versions_of(hub: Hub, ws: str, name: str) -> list[ModelVersion]:
    state = models_state(hub)
    with state.lock:
        return list(state.versions.get((ws, name), {}).values())


def _next_version(items: list[ModelVersion]) -> str:
    numbers = [int(i.version) for i in items if i.version.isdigit()]
    return str(max(numbers, default=0) + 1)


def _pairs(text: str | None) -> list[tuple[str, str | None]]:
    """``a,b=c`` → ``[("a", None), ("b", "c")]`` (the spec's tag / property filter syntax)."""
    out: list[tuple[str, str | None]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        out.append((key.strip(), value.strip() if sep else None))
    return out


def _matches(found: dict[str, Any], wanted: list[tuple[str, str | None]]) -> bool:
    return all(key in found and (value is None or str(found[key]) == value) for key, value in wanted)


# -- containers ------------------------------------------------------------------------------------------
def get_container(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "models/read")
    name = req.params["name"]
    items = _versions_of(hub, ws, name)
    if not items:
        raise _user_error(404, f"Could not find model container {name} in workspace {ws}.", "NotFound")
    latest, first = max(items, key=lambda i: i.sequence), min(items, key=lambda i: i.sequence)
    return json_response(200, {
        "id": f"{_workspace_id(hub, ws)}/models/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/models",
        "properties": {"description": None, "tags": {}, "properties": {}, "isArchived": False,
                       "latestVersion": latest.version, "nextVersion": _next_version(items),
                       "provisioningState": "Succeeded"},
        "systemData": system_data(first.created_at, first.created_by),
    })


def list_containers(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "models/read")
    state = models_state(hub)
    with state.lock:
        names = sorted(name for (w, name), versions in state.versions.items() if w == ws and versions)
    value = []
    for name in names:
        items = _versions_of(hub, ws, name)
        value.append({"id": f"{_workspace_id(hub, ws)}/models/{name}", "name": name,
                      "type": "Microsoft.MachineLearningServices/workspaces/models",
                      "properties": {"latestVersion": max(items, key=lambda i: i.sequence).version,
                                     "nextVersion": _next_version(items), "isArchived": False,
                                     "tags": {}, "properties": {}}})
    return json_response(200, {"value": value})


# -- versions --------------------------------------------------------------------------------------------
def list_versions(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "models/versions/read")
    items = _versions_of(hub, ws, req.params["name"])
    tags, props = _pairs(req.param("tags")), _pairs(req.param("properties"))
    items = [i for i in items if _matches(i.properties.get("tags") or {}, tags)
             and _matches(i.properties.get("properties") or {}, props)]
    if req.param("version"):
        items = [i for i in items if i.version == req.param("version")]
    order = (req.param("$orderBy") or "createdtime desc").lower()
    items.sort(key=lambda i: i.sequence, reverse="asc" not in order)
    try:
        skip = int(req.param("$skipToken") or 0)
        top = int(req.param("$top") or 100)
    except ValueError:
        raise _user_error(400, "$top and $skipToken must be integers.", "ValidationError") from None
    return page_response(req, hub, items, skip, top, lambda i: _version_body(hub, ws, i))


def _stored(hub: Hub, ws: str, name: str, version: str) -> ModelVersion:
    state = models_state(hub)
    return stored_version(state.lock, state.versions, ws, name, version, "model")


def get_version(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "models/versions/read")
    return json_response(200, _version_body(hub, ws, _stored(hub, ws, req.params["name"], req.params["version"])))


def delete_version(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "models/versions/delete")
    state = models_state(hub)
    return delete_stored(state.lock, state.versions, ws, req.params["name"], req.params["version"])


def put_version(req: Request, hub: Hub) -> Response:
    ws, claims = _target(req, hub, "models/versions/write")
    name, version = req.params["name"], req.params["version"]
    props = version_properties(req, name)
    uri = props.get("modelUri")
    if not isinstance(uri, str) or not _MODEL_URI_RE.match(uri):
        raise _user_error(400, f"'modelUri' must be a datastore, job output or storage URI, not {uri!r}.",
                          "ValidationError")
    kind = props.get("modelType")
    if kind is not None and kind not in MODEL_TYPES:
        raise _user_error(400, f"Unknown modelType '{kind}'.", "ValidationError")
    for key in ("tags", "properties", "flavors"):
        if props.get(key) is not None and not isinstance(props[key], dict):
            raise _user_error(400, f"'{key}' must be an object.", "ValidationError")
    state = models_state(hub)
    with state.lock:
        versions = state.versions.setdefault((ws, name), {})
        current = versions.get(version)
        if current is not None:
            if current.properties.get("modelUri") != uri:
                raise _user_error(400, ASSET_PATH_MESSAGE, "Conflict")
            current.properties.update({k: v for k, v in props.items() if k in ("description", "tags", "stage")})
            return json_response(200, _version_body(hub, ws, current))
        state.sequence += 1
        item = ModelVersion(name=name, version=version, properties=dict(props), created_at=_now(),
                            created_by=str(claims.get("name") or claims.get("oid") or "unknown"),
                            sequence=state.sequence)
        versions[version] = item
    return json_response(201, _version_body(hub, ws, item))


routes = [
    Route("GET", WS + r"/models", list_containers),
    Route("GET", MODEL, get_container),
    Route("GET", MODEL + r"/versions", list_versions),
    Route("GET", _VERSION, get_version),
    Route("PUT", _VERSION, put_version),
    Route("DELETE", _VERSION, delete_version),
]
