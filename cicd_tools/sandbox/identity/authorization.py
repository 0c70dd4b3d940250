"""Microsoft.Authorization roleAssignments and roleDefinitions (2022-04-01 shapes), read-only.

Role assignments are listed at any scope, as ARM does: no filter returns those at, above and below
the scope; ``atScope()`` those at or above it; ``principalId eq '{id}'`` one principal's at, above and
below; ``assignedTo('{id}')`` the same including the groups it belongs to (the sandbox has no groups, so
the principal's own). ``createdOn`` is when the assignment was made (pre-provisioned ones are old): what
preflight's freshness warning reads. Role definitions carry the sandbox's permissions (state.ROLE_DEFINITIONS).
Creating or deleting an assignment over ARM answers an explicit 501 (tests use the control endpoint).
"""

from __future__ import annotations

import re
from typing import Any

from cicd_tools.sandbox.armbase import authenticate, authorize, not_implemented, require_dated_api_version
from cicd_tools.sandbox.layout import PROVISIONED_AT, ROLE_DEFINITIONS, ROLE_IDS, RoleAssignment, scope_covers
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response

PROVIDER = "Microsoft.Authorization"
_SCOPE = r"(?P<scope>/subscriptions/[^/]+(?:/.+?)?)"
ASSIGNMENTS = _SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments"
DEFINITIONS = _SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions"
_PRINCIPAL_EQ = re.compile(r"^principalId\s+eq\s+'(?P<id>[^']+)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedTo\('(?P<id>[^']+)'\)$", re.IGNORECASE)
_ROLE_NAME_EQ = re.compile(r"^roleName\s+eq\s+'(?P<name>[^']+)'$", re.IGNORECASE)
_ROLE_ID_BY_GUID = {guid: name for name, guid in ROLE_IDS.items()}


def role_definition_id(hub: Hub, role: str) -> str:
    return f"/subscriptions/{hub.layout.subscription_id}/providers/{PROVIDER}/roleDefinitions/{ROLE_IDS[role]}"


def assignment_body(hub: Hub, item: RoleAssignment) -> dict[str, Any]:
    return {
        "id": f"{item.scope}/providers/{PROVIDER}/roleAssignments/{item.name}",
        "name": item.name,
        "type": f"{PROVIDER}/roleAssignments",
        "properties": {
            "roleDefinitionId": role_definition_id(hub, item.role),
            "principalId": item.principal_id,
            "principalType": "ServicePrincipal",
            "scope": item.scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": item.created_on,
            "updatedOn": item.created_on,
            "createdBy": None,
            "updatedBy": None,
            "delegatedManagedIdentityResourceId": None,
            "description": None,
        },
    }


def _filters(req: Request) -> tuple[bool, str | None]:
    """(atScope, principal id) from ``$filter``. Raises: HttpError 400 for a filter ARM would refuse."""
    raw = (req.param("$filter") or "").strip()
    at_scope, principal = False, None
    for part in (p.strip() for p in re.split(r"\s+and\s+", raw, flags=re.IGNORECASE) if p.strip()):
        match = _PRINCIPAL_EQ.match(part) or _ASSIGNED_TO.match(part)
        if part.lower() == "atscope()":
            at_scope = True
        elif match is not None:
            principal = match.group("id").lower()
        else:
            raise HttpError(arm_error(400, "UnsupportedQuery", f"The filter '{raw}' is not supported. Supported "
                                      "filters: atScope(), principalId eq '{id}', assignedTo('{id}')."))
    return at_scope, principal


def list_assignments(req: Request, hub: Hub) -> Response:
    claims = authenticate(req, hub)
    require_dated_api_version(req)
    scope = req.params["scope"].rstrip("/")
    authorize(hub, claims, scope, f"{PROVIDER}/roleAssignments/read")
    at_scope, principal = _filters(req)
    items = []
    for item in hub.state.assignments():
        if principal is not None and item.principal_id.lower() != principal:
            continue
        above = scope_covers(item.scope, scope)  # at or above
        below = scope_covers(scope, item.scope)
        if above or (below and not at_scope):
            items.append(assignment_body(hub, item))
    return json_response(200, {"value": items})


def definition_body(hub: Hub, role: str) -> dict[str, Any]:
    actions, data_actions = ROLE_DEFINITIONS[role]
    return {
        "id": role_definition_id(hub, role),
        "name": ROLE_IDS[role],
        "type": f"{PROVIDER}/roleDefinitions",
        "properties": {
            "roleName": role,
            "type": "BuiltInRole",
            "description": f"{role} (sandbox permissions)",
            "assignableScopes": ["/"],
            "permissions": [{"actions": list(actions), "notActions": [], "dataActions": list(data_actions),
                             "notDataActions": []}],
            "createdOn": PROVISIONED_AT,
            "updatedOn": PROVISIONED_AT,
        },
    }


def _definition_access(req: Request, hub: Hub) -> None:
    # Any signed-in principal of the tenant may read role definitions (built-in roles are public knowledge).
    authenticate(req, hub)
    require_dated_api_version(req)


def get_definition(req: Request, hub: Hub) -> Response:
    _definition_access(req, hub)
    role = _ROLE_ID_BY_GUID.get(req.params["guid"].lower())
    if role is None:
        raise HttpError(arm_error(404, "RoleDefinitionDoesNotExist",
                                  "The specified role definition with ID "
                                  f"'{req.params['guid']}' does not exist."))
    return json_response(200, definition_body(hub, role))


def list_definitions(req: Request, hub: Hub) -> Response:
    _definition_access(req, hub)
    raw = (req.param("$filter") or "").strip()
    match = _ROLE_NAME_EQ.match(raw)
    if raw and match is None:
        raise HttpError(arm_error(400, "UnsupportedQuery", f"The filter '{raw}' is not supported."))
    roles = [r for r in ROLE_IDS if match is None or r.lower() == match.group("name").lower()]
    return json_response(200, {"value": [definition_body(hub, r) for r in roles]})


_ASSIGNMENT = ASSIGNMENTS + r"/(?P<name>[^/]+)"
routes = [
    Route("GET", ASSIGNMENTS, list_assignments),
    Route("GET", DEFINITIONS, list_definitions),
    Route("GET", DEFINITIONS + r"/(?P<guid>[0-9a-fA-F-]{36})", get_definition),
    *(Route(method, _ASSIGNMENT, not_implemented) for method in ("GET", "PUT", "DELETE")),
]
