"""The App Service managed-identity protocol, so the real azure-identity credentials work unchanged.

``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R`` with ``X-IDENTITY-HEADER`` answers
``{access_token, expires_on, resource, token_type}`` (what msal's ``_obtain_token_on_app_service``
reads). The principal is the last path segment: ``/identity/ci-pipeline`` for the CI identity,
``/identity/adf-factory`` for the factory's managed identity.
"""

from __future__ import annotations

import hmac
import time

from cicd_tools.sandbox.identity import mint_token, principal_oid
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response

TOKEN_LIFETIME = 3600


def _failure(status: int, message: str) -> Response:
    # App Service answers failures as {"statusCode", "message"}; msal turns them into invalid_scope.
    return json_response(status, {"statusCode": status, "message": message, "correlationId": ""})


def get_token(req: Request, hub: Hub) -> Response:
    secret = req.header("X-IDENTITY-HEADER") or ""
    if not hmac.compare_digest(secret.encode(), hub.identity_header.encode()):
        return _failure(401, "The X-IDENTITY-HEADER header is missing or wrong.")
    if req.param("api-version") != "2019-08-01":
        return _failure(400, "Only api-version 2019-08-01 is supported.")
    resource = req.param("resource")
    if not resource:
        return _failure(400, "The resource parameter is required.")
    principal = req.params["principal"]
    expires = int(time.time()) + TOKEN_LIFETIME
    return json_response(200, {
        "access_token": mint_token(principal, resource, lifetime=TOKEN_LIFETIME),
        "expires_on": str(expires),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": principal_oid(principal),
    })


routes = [Route("GET", r"/identity/(?P<principal>[A-Za-z0-9][A-Za-z0-9._-]{0,63})", get_token, "identity")]
