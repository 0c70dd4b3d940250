"""The control endpoint (``/_sandbox/...`` on the ARM port, loopback only): steer the cloud.

Every ``/_sandbox`` call must carry the sandbox's secret in ``X-Cicd-Sandbox-Secret`` (server.check_secret,
applied by the dispatcher to every path under ``/_sandbox``, compared in constant time): 401 without it, 403
with a wrong one. So only the sandbox's owner (who can read the 0600 ``sandbox.json``) can steer it or read
account keys.

Tests and benchmarks use it through ``control_client.ControlClient``: propagation delay, extra
origins, role assignments, faults, direct account edits, the request log, and reset.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.sandbox.ml import jobs as aml_jobs
from cicd_tools.sandbox.ml import workspace as aml
from cicd_tools.sandbox.server import (
    HttpError,
    Hub,
    Request,
    Response,
    Route,
    RouteHandler,
    arm_error,
    json_response,
)
from cicd_tools.sandbox.state import assignments_json, fault_json
from cicd_tools.sandbox.storage.arm_storage import account_body, set_refused_types, validate_network_acls, validate_tags

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
FAULT_FIELDS = ("service", "path", "method", "kind", "status", "retry_after", "code", "message", "delay", "count")


def _body(req: Request) -> dict[str, Any]:
    body = req.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HttpError(arm_error(400, "InvalidRequestContent", "The control body must be a JSON object."))
    return body


def _guard(handler: RouteHandler) -> RouteHandler:
    """Loopback only; a bad control body is a 400 naming the problem."""

    def guarded(req: Request, hub: Hub) -> Response:
        if req.client_ip not in LOOPBACK:
            return arm_error(403, "Forbidden", "The sandbox control endpoint only answers loopback clients.")
        try:
            return handler(req, hub)
        except (ValueError, KeyError, TypeError) as err:
            return arm_error(400, "InvalidControlRequest", str(err))

    return guarded


def health(req: Request, hub: Hub) -> Response:
    return json_response(200, {"status": "ok"})


def info(req: Request, hub: Hub) -> Response:
    return json_response(200, hub.info())


def get_delay(req: Request, hub: Hub) -> Response:
    return json_response(200, {"seconds": hub.state.propagation_delay})


def set_delay(req: Request, hub: Hub) -> Response:
    hub.state.set_propagation_delay(float(_body(req)["seconds"]))
    return json_response(200, {"seconds": hub.state.propagation_delay})


PROPAGATION_FIELDS = {"delay": "delay", "flapWindow": "flap_window", "flapRefuseRatio": "flap_refuse",
                      "removalDelay": "removal_delay", "defaultActionDelay": "default_action_delay", "seed": "seed",
                      "roleDelay": "role_delay", "roleRemovalDelay": "role_removal_delay"}


def get_propagation(req: Request, hub: Hub) -> Response:
    return json_response(200, hub.state.propagation.to_json())


def set_propagation(req: Request, hub: Hub) -> Response:
    """Flapping new rules, lagging removals and defaultAction changes (fields of ``Propagation``)."""
    body = _body(req)
    unknown = set(body) - set(PROPAGATION_FIELDS)
    if unknown:
        raise ValueError(f"unknown propagation fields: {', '.join(sorted(unknown))}")
    changes = {PROPAGATION_FIELDS[k]: (v if k == "seed" else float(v)) for k, v in body.items()}
    return json_response(200, hub.state.set_propagation(**changes).to_json())


def set_storage_rp(req: Request, hub: Hub) -> Response:
    """``refuseResourceTypes``: resourceAccessRules types the Storage RP refuses on PATCH (a field regression)."""
    types = _body(req).get("refuseResourceTypes") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValueError("refuseResourceTypes must be a list of resource types")
    return json_response(200, {"refuseResourceTypes": set_refused_types(hub, types)})


def list_origins(req: Request, hub: Hub) -> Response:
    return json_response(200, {"value": hub.origins_json()})


def add_origin(req: Request, hub: Hub) -> Response:
    body = _body(req)
    return json_response(201, hub.add_origin(str(body["ip"]), body.get("name")))


def list_roles(req: Request, hub: Hub) -> Response:
    return json_response(200, {"value": assignments_json(hub.state.assignments())})


def add_role(req: Request, hub: Hub) -> Response:
    body = _body(req)
    scope = body.get("scope") or hub.layout.account_id(hub.layout.storage_account)
    item = hub.state.assign_role(str(body["principal"]), str(body["role"]), scope, created_on=body.get("createdOn"))
    return json_response(201, assignments_json([item])[0])


def remove_role(req: Request, hub: Hub) -> Response:
    body = _body(req)
    removed = hub.state.remove_role(str(body["principal"]), str(body["role"]), body.get("scope"))
    return json_response(200, {"removed": removed})


def list_faults(req: Request, hub: Hub) -> Response:
    return json_response(200, {"value": [fault_json(f) for f in hub.state.faults()]})


def add_fault(req: Request, hub: Hub) -> Response:
    body = _body(req)
    unknown = set(body) - set(FAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    return json_response(201, fault_json(hub.state.add_fault(**body)))


def clear_faults(req: Request, hub: Hub) -> Response:
    hub.state.clear_faults()
    return json_response(200, {"value": []})


def _account_view(hub: Hub, name: str) -> dict[str, Any]:
    if not hub.state.has_account(name):
        raise HttpError(arm_error(404, "ResourceNotFound", f"no sandbox account {name!r}"))
    view = account_body(hub, hub.state.account(name))
    view["sandbox"] = {"ruleAgeSeconds": hub.state.rule_ages(name),
                       "propagationDelaySeconds": hub.state.propagation_delay,
                       "accountKey": hub.account_key(name)}
    return view


def get_account(req: Request, hub: Hub) -> Response:
    return json_response(200, _account_view(hub, req.params["account"]))


def set_account(req: Request, hub: Hub) -> Response:
    """Preset account properties directly (no ARM auth), for test set-up."""
    name, body = req.params["account"], _body(req)
    _account_view(hub, name)
    updates: dict[str, Any] = {}
    if "allowSharedKeyAccess" in body:
        updates["allow_shared_key_access"] = body["allowSharedKeyAccess"]
    hub.state.update_account(
        name,
        network_acls=validate_network_acls(body["networkAcls"]) if body.get("networkAcls") is not None else None,
        public_network_access=body.get("publicNetworkAccess"),
        tags=validate_tags(body["tags"]) if body.get("tags") is not None else None,
        propagated=bool(body.get("propagated", True)),
        **updates,
    )
    return json_response(200, _account_view(hub, name))


def list_requests(req: Request, hub: Hub) -> Response:
    return json_response(200, {"value": hub.state.requests(req.param("service"))})


def clear_requests(req: Request, hub: Hub) -> Response:
    hub.state.clear_requests()
    return json_response(200, {"value": []})


def reset_sandbox(req: Request, hub: Hub) -> Response:
    # Not named ``reset``: Sandbox.reset calls every route module's ``reset(hub)`` provider hook.
    hub.reset()
    return json_response(200, {"status": "reset"})


_ACCOUNT = r"/_sandbox/accounts/(?P<account>[a-z0-9]{3,24})"
routes = [
    Route(method, path, _guard(handler), "control")
    for method, path, handler in (
        ("GET", r"/_sandbox/health", health),
        ("GET", r"/_sandbox/info", info),
        ("GET", r"/_sandbox/propagation-delay", get_delay),
        ("PUT", r"/_sandbox/propagation-delay", set_delay),
        ("GET", r"/_sandbox/storage/propagation", get_propagation),
        ("PUT", r"/_sandbox/storage/propagation", set_propagation),
        ("PUT", r"/_sandbox/storage/rp", set_storage_rp),
        ("GET", r"/_sandbox/origins", list_origins),
        ("POST", r"/_sandbox/origins", add_origin),
        ("GET", r"/_sandbox/role-assignments", list_roles),
        ("POST", r"/_sandbox/role-assignments", add_role),
        ("DELETE", r"/_sandbox/role-assignments", remove_role),
        ("GET", r"/_sandbox/faults", list_faults),
        ("POST", r"/_sandbox/faults", add_fault),
        ("DELETE", r"/_sandbox/faults", clear_faults),
        ("GET", _ACCOUNT, get_account),
        ("PATCH", _ACCOUNT, set_account),
        ("GET", r"/_sandbox/requests", list_requests),
        ("DELETE", r"/_sandbox/requests", clear_requests),
        ("POST", r"/_sandbox/reset", reset_sandbox),
        ("GET", r"/_sandbox/machinelearning/code-hash-scope", aml.get_hash_scope),
        ("PUT", r"/_sandbox/machinelearning/code-hash-scope", aml.set_hash_scope),
        ("GET", r"/_sandbox/machinelearning/job-timing", aml_jobs.get_timing),
        ("PUT", r"/_sandbox/machinelearning/job-timing", aml_jobs.set_timing),
    )
]
