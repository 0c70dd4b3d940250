"""What every ARM provider emulator shares: api-version checks, bearer authentication, RBAC checks.

Shapes follow ARM's: 400 ``MissingApiVersionParameter`` / ``NoRegisteredProviderFound``, 401
``AuthenticationFailed`` / ``InvalidAuthenticationToken`` with ``WWW-Authenticate``, 403
``AuthorizationFailed`` naming the client, the action and the scope.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from typing import Any

from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT, TokenError, verify_token
from cicd_tools.sandbox.server import (
    HttpError,
    Hub,
    Request,
    Response,
    arm_error,
    not_emulated,
    set_arm_authenticator,
)

PUBLIC_ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")


def require_api_version(req: Request, supported: Collection[str], resource_type: str) -> str:
    """The request's api-version. Raises: HttpError 400 when missing or not served for the type."""
    version = req.param("api-version")
    if not version:
        raise HttpError(arm_error(400, "MissingApiVersionParameter",
                                  "The api-version query parameter (?api-version=) is required for all requests."))
    if version not in supported:
        raise HttpError(arm_error(
            400, "NoRegisteredProviderFound",
            f"No registered resource provider found for location 'westeurope' and API version '{version}' for "
            f"type '{resource_type}'. The supported api-versions are '{', '.join(sorted(supported, reverse=True))}'."
        ))
    return version


def _challenge(description: str) -> dict[str, str]:
    return {"WWW-Authenticate": (
        f'Bearer authorization_uri="https://login.windows.net/{SANDBOX_TENANT}", error="invalid_token", '
        f'error_description="{description}"'
    )}


def authenticate(req: Request, hub: Hub, *, also_for: Collection[str] = ()) -> dict[str, Any]:
    """The claims of the request's ARM token: signed by this sandbox, for ARM, not expired. Raises: HttpError 401.

    ``also_for``: further audiences the calling service accepts (Azure ML's data plane takes ``https://ml.azure.com``).
    """
    token = req.bearer_token()
    if token is None:
        raise HttpError(arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header "
                                  "is missing.", _challenge("The authentication failed because of missing "
                                                            "'Authorization' header.")))
    try:
        claims = verify_token(token, hub.signing_key)
    except TokenError as err:
        if err.reason == "expired":
            raise HttpError(arm_error(401, "ExpiredAuthenticationToken", "The access token expiry UTC time is "
                                      "earlier than current UTC time.",
                                      _challenge("The access token has expired."))) from None
        raise HttpError(arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.",
                                  _challenge("The access token is invalid."))) from None
    audiences = {hub.arm_endpoint.rstrip("/"), *PUBLIC_ARM_AUDIENCES, *(a.rstrip("/") for a in also_for)}
    audience = str(claims.get("aud", "")).rstrip("/")
    if audience not in audiences:
        raise HttpError(arm_error(
            401, "InvalidAuthenticationToken",
            f"The access token has been obtained for wrong audience or resource '{audience}'. It should exactly "
            f"match with one of the allowed audiences '{', '.join(sorted(audiences))}'.",
            _challenge("The access token has been obtained for wrong audience."),
        ))
    if not str(claims.get("iss", "")).startswith("https://sts.windows.net/"):
        raise HttpError(arm_error(401, "InvalidAuthenticationTokenTenant", "The access token is from the wrong "
                                  "issuer.", _challenge("The access token is from the wrong issuer.")))
    if float(claims.get("exp", 0)) < time.time():
        raise HttpError(arm_error(401, "ExpiredAuthenticationToken", "The access token expiry UTC time is "
                                  "earlier than current UTC time.", _challenge("The access token has expired.")))
    return claims


def authorize(hub: Hub, claims: dict[str, Any], resource_id: str, action: str) -> None:
    """Check that the token's principal may perform ``action`` on ``resource_id``. Raises: HttpError 403."""
    oid = str(claims.get("oid", ""))
    if hub.state.authorize(oid, resource_id, action):
        return
    raise HttpError(arm_error(
        403, "AuthorizationFailed",
        f"The client '{claims.get('name', oid)}' with object id '{oid}' does not have authorization to perform "
        f"action '{action}' over scope '{resource_id}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    ))


def check_resource_group(req: Request, hub: Hub, subscription: str, group: str) -> None:
    """404 like ARM for an unknown subscription or resource group. Raises: HttpError."""
    if subscription.lower() != hub.layout.subscription_id.lower():
        raise HttpError(arm_error(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be "
                                  "found."))
    if group.lower() != hub.layout.resource_group.lower():
        raise HttpError(arm_error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."))


def not_implemented(req: Request, hub: Hub) -> Response:
    """An explicit 501 naming the operation, for calls the sandbox knows but does not emulate (never a silent 404)."""
    return not_emulated(req)


_API_VERSION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def require_dated_api_version(req: Request) -> str:
    """Any well-formed api-version (for read-only providers whose SDKs move fast). Raises: HttpError 400."""
    version = req.param("api-version")
    if not version or not _API_VERSION_FORMAT.match(version):
        raise HttpError(arm_error(400, "MissingApiVersionParameter",
                                  "The api-version query parameter (?api-version=) is required for all requests."))
    return version


def resource_not_found(hub: Hub, resource_type: str, name: str) -> HttpError:
    """ARM's 404 for a resource the resource group does not hold."""
    return HttpError(arm_error(
        404, "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{hub.layout.resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    ))


def read_access(req: Request, hub: Hub, resource_id: str, action: str) -> dict[str, Any]:
    """Authenticate a management read, check its api-version, resource group and role. Raises: HttpError."""
    claims = authenticate(req, hub)
    require_dated_api_version(req)
    if "sub" in req.params and "rg" in req.params:
        check_resource_group(req, hub, req.params["sub"], req.params["rg"])
    authorize(hub, claims, resource_id, action)
    return claims


set_arm_authenticator(authenticate)  # the server's gate runs it before every non-public ARM route
