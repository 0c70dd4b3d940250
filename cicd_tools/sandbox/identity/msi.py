"""The App Service managed-identity protocol, so the real azure-identity credentials work unchanged.

``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R`` with ``X-IDENTITY-HEADER`` answers
``{access_token, expires_on, resource, token_type}`` (what msal's ``_obtain_token_on_app_service``
reads). The principal is the last path segment: ``/identity/ci-pipeline`` for the CI identity,
``/identity/adf-factory`` for the factory's managed identity. ``client_id=`` (what
``ManagedIdentityCredential(client_id=…)`` sends for a user-assigned identity) selects another identity
the sandbox knows; an unknown one is refused as App Service refuses it.
"""

from __future__ import annotations

import hmac
import time

from cicd_tools.sandbox.identity.identity import mint_token, principal_oid
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response

TOKEN_LIFETIME = 3600
UNKNOWN_IDENTITY = "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."


def _failure(status: int, message: str) -> Response:
    # App Service answers failures as {"statusCode", "message"}; msal turns them into invalid_scope.
    return json_response(status, {"statusCode": status, "message": message, "correlationId": ""})


def known_identities(hub: Hub) -> dict[str, str]:
    """client id -> principal name for every identity the sandbox knows (its layout and role holders)."""
    names = {hub.layout.ci_principal, hub.layout.factory_principal}
    names.update(a.principal for a in hub.state.assignments() if a.principal != a.principal_id)
    return {principal_oid(name): name for name in names}


def get_token(req: Request, hub: Hub) -> Response:
    secret = req.header("X-IDENTITY-HEADER") or ""
    if not hmac.compare_digest(secret.encode(), hub.identity_header.encode()):
        return _failure(401, "The X-IDENTITY-HEADER header is missing or wrong.")
    if req.param("api-version") != "2019-08-01":
        return _failure(400, "Only api-version 2019-08-01 is supported.")
    resource = req.param("resource")
    if not resource:
        return _failure(400, "The resource parameter is required.")
    if req.param("mi_res_id") or req.param("object_id") or req.param("principal_id"):
        return _failure(400, "The sandbox selects user-assigned identities by client_id only "
                             "(mi_res_id / object_id are not implemented).")
    principal = req.params["principal"]
    client_id = req.param("client_id")
    if client_id:
        selected = known_identities(hub).get(client_id.lower())
        if selected is None:
            return _failure(400, UNKNOWN_IDENTITY)
        principal = selected
    expires = int(time.time()) + TOKEN_LIFETIME
    hub.state.record(service="issuance", method=req.method, path=req.path, status=200, grant="managed_identity",
                     assertionIssuer="", principal=principal, audience=resource.rstrip("/"),
                     userAgent=req.header("User-Agent") or "")
    return json_response(200, {
        "access_token": mint_token(principal, resource, key=hub.signing_key, lifetime=TOKEN_LIFETIME),
        "expires_on": str(expires),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": principal_oid(principal),
    })


routes = [Route("GET", r"/identity/(?P<principal>[A-Za-z0-9][A-Za-z0-9._-]{0,63})", get_token, "identity")]
