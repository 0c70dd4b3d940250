"""Microsoft.DataFactory (2018-06-01) resources: the factory and its published child resources.

``factories/{f}`` GET (with ``identity.principalId`` and ``globalParameters``), PUT/PATCH (global
parameters; the identity stays the factory's own), and for pipelines, linked services, datasets,
integration runtimes, triggers, managed virtual networks, managed private endpoints and global
parameters: PUT / GET / DELETE / list. Triggers start and stop; integration runtimes answer
``getStatus``. Every call needs an ARM token whose principal holds a role on the factory.
"""

from __future__ import annotations

import re
from typing import Any

from cicd_tools.adf.run_rules import PipelineInvalid, validate
from cicd_tools.sandbox.armbase import authenticate, authorize, check_resource_group, require_api_version
from cicd_tools.sandbox.datafactory.store import (
    KINDS,
    MPE_KIND,
    PROVIDER,
    FactoryState,
    df_state,
    envelope,
    factory_id,
    mpe_properties,
)
from cicd_tools.sandbox.identity.identity import principal_oid
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, arm_error, json_response

API_VERSIONS = ("2018-06-01",)
FACTORY = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
           rf"/providers/{re.escape(PROVIDER)}/factories/(?P<factory>[^/]+)")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][^<>*#.%&:\\+?/]{0,259}$")
GLOBAL_TYPES = ("Object", "String", "Int", "Float", "Bool", "Array")
MPE_SERVICE_FIELDS = ("connectionState", "fqdns", "provisioningState", "isReserved")


def target(req: Request, hub: Hub, action: str) -> FactoryState:
    """Authenticate, check api-version, resource group, factory and role. Raises: HttpError."""
    claims = authenticate(req, hub)
    require_api_version(req, API_VERSIONS, f"{PROVIDER}/factories")
    check_resource_group(req, hub, req.params["sub"], req.params["rg"])
    name = req.params["factory"]
    state = df_state(hub)
    with state.lock:
        factory = state.factories.get(name.lower())
    if factory is None:
        raise HttpError(arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/factories/{name}' under "
                                  f"resource group '{req.params['rg']}' was not found."))
    authorize(hub, claims, factory_id(hub, factory.name), f"{PROVIDER}/factories/{action}")
    return factory


def not_found(kind: str, name: str, factory: str) -> HttpError:
    return HttpError(arm_error(404, "NotFound", f"Entity '{name}' of type '{kind}' not found in factory "
                               f"'{factory}'."))


# -- the factory ------------------------------------------------------------------------------------
def factory_body(hub: Hub, factory: FactoryState) -> dict[str, Any]:
    with df_state(hub).lock:
        globals_ = factory.resources.get(("globalparameters", "default"), {}).get("properties", {})
    return {
        "id": factory_id(hub, factory.name),
        "name": factory.name,
        "type": f"{PROVIDER}/factories",
        "location": factory.location,
        "identity": {"type": "SystemAssigned", "principalId": principal_oid(factory.principal),
                     "tenantId": "72f988bf-0000-4000-8000-00000000cafe"},
        "properties": {"provisioningState": "Succeeded", "createTime": factory.created, "version": "2018-06-01",
                       "globalParameters": globals_, "publicNetworkAccess": "Enabled"},
        "eTag": "\"00000000-0000-0000-0000-000000000001\"",
        "tags": {},
    }


def get_factory(req: Request, hub: Hub) -> Response:
    return json_response(200, factory_body(hub, target(req, hub, "read")))


def list_factories(req: Request, hub: Hub) -> Response:
    claims = authenticate(req, hub)
    require_api_version(req, API_VERSIONS, f"{PROVIDER}/factories")
    if "rg" in req.params:  # Factories_ListByResourceGroup; without it Factories_List (the subscription's)
        check_resource_group(req, hub, req.params["sub"], req.params["rg"])
    elif req.params["sub"].lower() != hub.layout.subscription_id.lower():
        raise HttpError(arm_error(404, "SubscriptionNotFound", f"The subscription '{req.params['sub']}' could "
                                  "not be found."))
    state = df_state(hub)
    with state.lock:
        factories = list(state.factories.values())
    authorize(hub, claims, hub.layout.resource_group_id, f"{PROVIDER}/factories/read")
    return json_response(200, {"value": [factory_body(hub, f) for f in factories]})


def put_factory(req: Request, hub: Hub) -> Response:
    """PUT/PATCH: the global parameters are taken; the identity and location stay the sandbox's."""
    factory = target(req, hub, "write")
    body = req.json() or {}
    props = body.get("properties") if isinstance(body, dict) else None
    if isinstance(props, dict) and "globalParameters" in props:
        store_globals(hub, factory, props["globalParameters"] or {})
    return json_response(200, factory_body(hub, factory))


def validate_globals(value: Any) -> dict[str, Any]:
    """Global parameter specs as the service checks them. Raises: HttpError 400."""
    if not isinstance(value, dict):
        raise HttpError(arm_error(400, "BadRequest", "globalParameters must be an object of name -> {type, value}."))
    for name, spec in value.items():
        if not isinstance(spec, dict) or "type" not in spec or "value" not in spec:
            raise HttpError(arm_error(400, "BadRequest", f"Global parameter '{name}' needs 'type' and 'value'."))
        kind = str(spec["type"])
        if kind.lower() not in [t.lower() for t in GLOBAL_TYPES]:
            raise HttpError(arm_error(400, "BadRequest", f"Global parameter '{name}' has type '{kind}'; expected one "
                                      f"of {', '.join(GLOBAL_TYPES)}."))
    return {k: {"type": next(t for t in GLOBAL_TYPES if t.lower() == str(v["type"]).lower()), "value": v["value"]}
            for k, v in value.items()}


def store_globals(hub: Hub, factory: FactoryState, value: Any) -> dict[str, Any]:
    checked = validate_globals(value)
    with df_state(hub).lock:
        factory.resources[("globalparameters", "default")] = envelope(
            hub, factory.name, "globalparameters", "default", checked)
        return factory.resources[("globalparameters", "default")]


# -- child resources --------------------------------------------------------------------------------
def _kind(req: Request) -> str:
    kind = req.params["kind"].lower()
    if kind not in KINDS:
        raise HttpError(arm_error(501, "NotImplemented", f"The sandbox's Data Factory does not implement "
                                  f"'{req.method} {req.path}'."))
    return kind


def _key(req: Request) -> tuple[str, str]:
    if "vnet" in req.params:
        return MPE_KIND, f"{req.params['vnet']}/{req.params['name']}".lower()
    return _kind(req), req.params["name"].lower()


def list_children(req: Request, hub: Hub) -> Response:
    if "vnet" in req.params:
        factory = target(req, hub, "managedVirtualNetworks/managedPrivateEndpoints/read")
        kind, prefix = MPE_KIND, req.params["vnet"].lower() + "/"
    else:
        kind = _kind(req)
        factory = target(req, hub, f"{KINDS[kind]}/read")
        prefix = ""
    with df_state(hub).lock:
        items = [dict(body) for (k, name), body in factory.resources.items() if k == kind and name.startswith(prefix)]
    return json_response(200, {"value": items})


def get_child(req: Request, hub: Hub) -> Response:
    kind, key = _key(req)
    factory = target(req, hub, f"{KINDS.get(kind, 'managedVirtualNetworks/managedPrivateEndpoints')}/read")
    with df_state(hub).lock:
        body = factory.resources.get((kind, key))
    if body is None:
        raise not_found(kind, req.params["name"], factory.name)
    return json_response(200, body)


def put_child(req: Request, hub: Hub) -> Response:
    kind, key = _key(req)
    factory = target(req, hub, f"{KINDS.get(kind, 'managedVirtualNetworks/managedPrivateEndpoints')}/write")
    name = req.params["name"]
    if not _NAME_RE.match(name):
        raise HttpError(arm_error(400, "InvalidResourceName", f"The resource name '{name}' is invalid."))
    body = req.json()
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise HttpError(arm_error(400, "BadRequest", "The request body needs a 'properties' object."))
    if kind == "globalparameters":
        return json_response(200, store_globals(hub, factory, props))
    if kind == MPE_KIND:
        props = _mpe(hub, factory, key, props)
    elif kind == "pipelines":
        activities = props.get("activities", [])
        if not isinstance(activities, list):
            raise HttpError(arm_error(400, "BadRequest", "Pipeline 'activities' must be an array."))
        try:  # the service refuses to publish a pipeline with a broken dependsOn graph
            validate({"name": name, "properties": props})
        except PipelineInvalid as err:
            raise HttpError(arm_error(400, "BadRequest", f"Pipeline '{name}': {err.message}")) from None
    elif kind == "triggers":
        state = _trigger_state(factory, key)
        if state == "Started":  # ADF refuses to change a started trigger: stop it first
            raise HttpError(arm_error(400, "TriggerEnabledCannotUpdate", f"Cannot update enabled Trigger "
                                      f"'{name}'; it needs to be stopped first."))
        props = {**props, "runtimeState": state}
    with df_state(hub).lock:
        factory.resources[(kind, key)] = envelope(hub, factory.name, kind, name, props,
                                                  parent=req.params.get("vnet"))
        answer = dict(factory.resources[(kind, key)])
    return json_response(200, answer)  # ADF answers 200 for create and update alike


def _trigger_state(factory: FactoryState, key: str) -> str:
    current = factory.resources.get(("triggers", key))
    return str(current["properties"].get("runtimeState", "Stopped")) if current else "Stopped"


def _mpe(hub: Hub, factory: FactoryState, key: str, props: dict[str, Any]) -> dict[str, Any]:
    """A managed private endpoint: immutable once created; a new one starts Pending approval."""
    resource = props.get("privateLinkResourceId")
    group = props.get("groupId")
    if not isinstance(resource, str) or not isinstance(group, str):
        raise HttpError(arm_error(400, "BadRequest", "A managed private endpoint needs 'privateLinkResourceId' "
                                  "and 'groupId'."))
    with df_state(hub).lock:
        current = factory.resources.get((MPE_KIND, key))
    if current is not None:
        old = current["properties"]
        if old["privateLinkResourceId"].lower() != resource.lower() or old["groupId"].lower() != group.lower():
            raise HttpError(arm_error(400, "BadRequest", "A managed private endpoint cannot be updated: delete it "
                                      "and create it again (it will need approval again)."))
        return dict(old)
    account = resource.rstrip("/").rsplit("/", 1)[-1] if "/storageaccounts/" in resource.lower() else None
    return mpe_properties(resource, group, "Pending", account)


def delete_child(req: Request, hub: Hub) -> Response:
    kind, key = _key(req)
    factory = target(req, hub, f"{KINDS.get(kind, 'managedVirtualNetworks/managedPrivateEndpoints')}/delete")
    with df_state(hub).lock:
        if kind == "triggers" and _trigger_state(factory, key) == "Started":
            raise HttpError(arm_error(400, "TriggerEnabledCannotUpdate", f"Cannot delete enabled Trigger "
                                      f"'{req.params['name']}'; it needs to be stopped first."))
        removed = factory.resources.pop((kind, key), None)
    return Response(200 if removed else 204)


def trigger_action(req: Request, hub: Hub) -> Response:
    """``triggers/{name}/start`` and ``/stop``: flips ``runtimeState`` (the sandbox never fires triggers)."""
    factory = target(req, hub, "triggers/write")
    key = req.params["name"].lower()
    with df_state(hub).lock:
        body = factory.resources.get(("triggers", key))
        if body is None:
            raise not_found("triggers", req.params["name"], factory.name)
        body["properties"]["runtimeState"] = "Started" if req.params["action"].lower() == "start" else "Stopped"
    return Response(200)


def runtime_status(req: Request, hub: Hub) -> Response:
    """``integrationRuntimes/{name}/getStatus``: a managed runtime is always Started here."""
    factory = target(req, hub, "integrationRuntimes/getStatus/action")
    with df_state(hub).lock:
        body = factory.resources.get(("integrationruntimes", req.params["name"].lower()))
    if body is None:
        raise not_found("integrationruntimes", req.params["name"], factory.name)
    kind = body["properties"].get("type", "Managed")
    return json_response(200, {"name": body["name"], "properties": {
        "type": kind, "dataFactoryName": factory.name, "state": "Started" if kind == "Managed" else "Online",
        "typeProperties": {}}})


def not_implemented(req: Request, hub: Hub) -> Response:
    return arm_error(501, "NotImplemented", f"The sandbox's Data Factory does not implement '{req.method} "
                     f"{req.path}'; see docs/sandbox.md (Microsoft.DataFactory) for what it serves.")
