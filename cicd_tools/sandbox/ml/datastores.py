"""The workspace's two system datastores, as ``ml_client.datastores`` and ``jobs.download`` meet them.

A workspace is created with ``workspaceblobstore`` (the default: job outputs, uploads; container
``azureml-blobstore-{workspace id}``) and ``workspaceartifactstore`` (container ``azureml``: run logs under
``ExperimentRun/dcid.{run}/``), both on the workspace storage account with account-key credentials
(``systemDatastoresAuthMode: accessKey``). Served: ``GET {WS}/datastores`` (with ``isDefault``, what
``DatastoreOperations.get_default`` lists), ``GET {WS}/datastores/{name}`` and ``POST …/listSecrets`` (the SDK
sends ``{"expirableSecret": true, "expireAfterHours": 1}`` and gets a container SAS; without it, the account key).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cicd_tools.sandbox.ml.workspace import (
    ARTIFACT_CONTAINER,
    DATASTORE,
    PROVIDER,
    WS,
    _container_sas,
    _create_container,
    _datastore_container,
    _target,
    _user_error,
    _workspace_id,
    aml_state,
)
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response

ARTIFACT_STORE = "workspaceartifactstore"
STORE = WS + r"/datastores/(?P<store>[^/]+)"


def _containers(hub: Hub, ws: str) -> dict[str, str]:
    return {DATASTORE: _datastore_container(hub, ws), ARTIFACT_STORE: ARTIFACT_CONTAINER}


def _body(hub: Hub, ws: str, name: str) -> dict[str, Any]:
    account = hub.layout.workspace_storage_account
    container = _containers(hub, ws)[name]
    state = aml_state(hub)
    with state.lock:
        missing = container not in state.created
        state.created.add(container)
    if missing:
        _create_container(hub, account, container)
    return {
        "id": f"{_workspace_id(hub, ws)}/datastores/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/datastores",
        "properties": {
            "datastoreType": "AzureBlob",
            "accountName": account,
            "containerName": container,
            "endpoint": hub.blob_endpoint_of(account).split("://", 1)[1].split("/", 1)[0],
            "protocol": "https",
            "credentials": {"credentialsType": "AccountKey"},
            "isDefault": name == DATASTORE,
            "serviceDataAccessAuthIdentity": "None",
        },
    }


def _known(hub: Hub, ws: str, name: str) -> None:
    if name not in _containers(hub, ws):
        raise _user_error(404, f"Datastore {name} not found in workspace {ws}.", "NotFound")


def list_datastores(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "datastores/read")
    names = list(_containers(hub, ws))
    wanted = (req.param("isDefault") or "").lower()
    if wanted in ("true", "false"):
        names = [n for n in names if (n == DATASTORE) == (wanted == "true")]
    return json_response(200, {"value": [_body(hub, ws, n) for n in names]})


def get_datastore(req: Request, hub: Hub) -> Response:
    ws, _ = _target(req, hub, "datastores/read")
    _known(hub, ws, req.params["store"])
    return json_response(200, _body(hub, ws, req.params["store"]))


def list_datastore_secrets(req: Request, hub: Hub) -> Response:
    """The account key; with ``{"expirableSecret": true}`` a container SAS instead, valid ``expireAfterHours``
    (default 1): azure-ai-ml 1.24.0 reads ``credential.sas_token`` of that answer unconditionally
    (``_artifacts/_artifact_utilities.py:110``), 1.35.2 takes ``sas_token`` before ``key``."""
    ws, _ = _target(req, hub, "datastores/listSecrets/action")
    name = req.params["store"]
    _known(hub, ws, name)
    account = hub.layout.workspace_storage_account
    body = req.json()
    options = body if isinstance(body, dict) else {}
    if options.get("expirableSecret") is True:
        hours = options.get("expireAfterHours")
        lifetime = dt.timedelta(hours=float(hours) if isinstance(hours, (int, float)) and 0 < hours <= 24 else 1)
        return json_response(200, {"secretsType": "Sas", "sasToken": _container_sas(
            hub, account, _containers(hub, ws)[name], lifetime=lifetime)})
    return json_response(200, {"secretsType": "AccountKey", "key": hub.account_key(account)})


routes = [
    Route("GET", WS + r"/datastores", list_datastores),
    Route("GET", STORE, get_datastore),
    Route("POST", STORE + r"/listSecrets", list_datastore_secrets),
]
