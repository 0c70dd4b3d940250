"""An Entra ID token endpoint on the ARM port, so CI's federated and CLI credentials work unchanged.

``AZURE_AUTHORITY_HOST`` points azure-identity at it. ``WorkloadIdentityCredential`` and
``AzurePipelinesCredential`` (both ``ClientAssertionCredential`` inside; azure-identity's ``AadClient``
posts straight to the token URL, no discovery) send ``POST /{tenant}/oauth2/v2.0/token`` with
``grant_type=client_credentials``, ``client_id``, ``scope=R/.default`` and a ``client_assertion``: a CI
runner's OIDC token, which must match a federated identity credential of the app (issuer, subject,
audience, case-sensitively, as Entra does since 2025). The az shim logs in like ``az login
--service-principal`` with a secret. Refusals carry Entra's shape: ``{error, error_description:
"AADSTS…", error_codes, timestamp, trace_id, correlation_id, error_uri}``. Access tokens are the
sandbox's signed v1 tokens (identity.mint_token), which ARM and the blob front accept. A client
assertion must carry the signature of the sandbox's CI issuers (ci_oidc): a forged or ``alg: none`` one is
refused with AADSTS50027, as Entra refuses a token it cannot validate.
The tenant's OpenID discovery document is served too, for MSAL clients (MSAL asks login.microsoftonline.com,
not the authority, for instance discovery of an unknown host: such clients need ``instance_discovery=False``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import threading
import time
import uuid
import weakref
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from cicd_tools.sandbox.control import LOOPBACK
from cicd_tools.sandbox.identity.ci_oidc import (
    ADO_ISSUER,
    ADO_SUBJECT,
    EXCHANGE_AUDIENCE,
    GITHUB_ISSUER,
    GITHUB_SUBJECT,
    derived_secret,
)
from cicd_tools.sandbox.identity.identity import (
    SANDBOX_TENANT,
    audience_for_scope,
    mint_token,
    principal_oid,
    verify_signature,
)
from cicd_tools.sandbox.server import Hub, Request, Response, Route, arm_error, json_response

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential on the app registration of ``principal``."""

    name: str
    principal: str
    issuer: str
    subject: str
    audience: str = EXCHANGE_AUDIENCE


def default_federated_credentials(ci_principal: str) -> list[FederatedCredential]:
    """What the CI app registration trusts: the repository's main branch and the ADO service connection."""
    return [
        FederatedCredential("github-main", ci_principal, GITHUB_ISSUER, GITHUB_SUBJECT),
        FederatedCredential("azure-devops-service-connection", ci_principal, ADO_ISSUER, ADO_SUBJECT),
    ]


def client_id_of(principal: str) -> str:
    """The app (client) id of a sandbox principal: its object id, as the MSI endpoint reports it."""
    return principal_oid(principal)


def client_secret_of(identity_header: str, principal: str) -> str:
    """The client secret of a principal's app registration (what the az shim logs in with)."""
    return derived_secret(identity_header, f"client-secret:{principal}")


class EntraState:
    """The federated credentials of this sandbox (per hub, reset with it)."""

    def __init__(self, ci_principal: str) -> None:
        self._lock = threading.Lock()
        self._ci_principal = ci_principal
        self._credentials = default_federated_credentials(ci_principal)

    def credentials(self) -> list[FederatedCredential]:
        with self._lock:
            return list(self._credentials)

    def add(self, item: FederatedCredential) -> None:
        with self._lock:
            self._credentials = [c for c in self._credentials if c.name != item.name] + [item]

    def apps(self) -> dict[str, str]:
        """client id -> principal for every app registration the tenant holds."""
        with self._lock:
            names = {self._ci_principal, *(c.principal for c in self._credentials)}
        return {client_id_of(name): name for name in names}


_STATES: weakref.WeakKeyDictionary[Any, EntraState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def entra_state(hub: Hub) -> EntraState:
    """This sandbox's tenant (kept beside the hub, like aml_state)."""
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = EntraState(hub.layout.ci_principal)
        return state


def reset(hub: Hub) -> None:
    """Back to the default federated credentials (the provider reset hook)."""
    with _STATES_LOCK:
        _STATES[hub.state] = EntraState(hub.layout.ci_principal)


def _timestamp(moment: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if moment is None else moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def entra_error(status: int, error: str, code: int, message: str) -> Response:
    """Entra's OAuth error body, the AADSTS code first in the description."""
    trace, correlation, now = str(uuid.uuid4()), str(uuid.uuid4()), _timestamp()
    return json_response(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                             f"Timestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    })


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _form(req: Request) -> dict[str, str]:
    parsed = parse_qs(req.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _federated_principal(hub: Hub, client_id: str, assertion: str) -> tuple[str, str]:
    """The principal a client assertion authenticates, and its issuer. Raises: _Refused like Entra."""
    try:
        claims = verify_signature(assertion, hub.signing_key)  # the lifetime is checked below, as Entra words it
    except ValueError:
        raise _Refused(entra_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")) from None
    issuer, subject, audience = (str(claims.get(k, "")) for k in ("iss", "sub", "aud"))
    now = time.time()
    expires, not_before = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
    if expires <= now or not_before > now + 300:
        raise _Refused(entra_error(
            400, "invalid_client", 700024,
            f"Client assertion is not within its valid time range. Current time: {_timestamp(now)}, assertion "
            f"valid from {_timestamp(not_before)}, expiry time of assertion {_timestamp(expires)}. Review the "
            "documentation at https://docs.microsoft.com/azure/active-directory/develop/"
            "active-directory-certificate-credentials .",
        ))
    app_principal = entra_state(hub).apps()[client_id]
    records = [item for item in entra_state(hub).credentials() if item.principal == app_principal]
    for item in records:
        # Entra matches issuer, subject and audience exactly (case-sensitive since 2025).
        if (item.issuer, item.subject, item.audience) == (issuer, subject, audience):
            return item.principal, issuer
    raise _Refused(_no_matching_record(records, issuer, subject, audience))


# Current Entra names the claim that matched no federated identity credential (AADSTS70021, one code for all, is
# retired). Codes and wording as Entra answers them today:
# - AADSTS700211 issuer, AADSTS700212 audience: Azure/azure-sdk-for-js sdk/identity/identity/TROUBLESHOOTING.md
#   (identity bindings rows) and field bodies quoting them;
# - AADSTS700213 subject: Azure/login#482, Azure/azure-workload-identity#1200, dotnet/maui#31978 ("No matching
#   federated identity record found for presented assertion subject '...'. Check your federated identity
#   credential Subject, Audience and Issuer against the presented assertion.");
# - AADSTS7002138 subject that matches only case-insensitively (FICs match case-sensitively since the August 2024
#   breaking change): Azure/login#515, #517, and Azure/login#619, which documents the pair.
# The error field and status follow the recorded bodies of this family: ``invalid_client``, HTTP 401
# (microsoft/Agents#202 for AADSTS7002137).
_FIC_DOC = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_CHECK = "Check your federated identity credential Subject, Audience and Issuer against the presented assertion."


def _no_matching_record(records: list[FederatedCredential], issuer: str, subject: str, audience: str) -> Response:
    """Entra's refusal for an assertion no federated identity credential of the app matches."""
    same_issuer = [r for r in records if r.issuer == issuer]
    if not same_issuer:
        return entra_error(401, "invalid_client", 700211, "No matching federated identity record found for "
                           f"presented assertion issuer '{issuer}'. {_CHECK} {_FIC_DOC}")
    if not any(r.subject == subject for r in same_issuer):
        if any(r.subject.lower() == subject.lower() for r in same_issuer):
            return entra_error(401, "invalid_client", 7002138, "No matching federated identity record found for "
                               f"presented assertion subject '{subject}'. The subject matches with case-insensitive "
                               f"comparison, but not with case-sensitive comparison. {_CHECK} See documentation at: "
                               f"{_FIC_DOC}. See breaking change notification and remediation at: https://"
                               "learn.microsoft.com/en-us/entra/identity-platform/reference-breaking-changes"
                               "#august-2024.")
        return entra_error(401, "invalid_client", 700213, "No matching federated identity record found for "
                           f"presented assertion subject '{subject}'. {_CHECK} {_FIC_DOC}")
    return entra_error(401, "invalid_client", 700212, "No matching federated identity record found for presented "
                       f"assertion audience '{audience}'. {_CHECK} {_FIC_DOC}")


def _authenticate(hub: Hub, tenant: str, form: dict[str, str]) -> tuple[str, str, str]:
    """(principal, grant, assertion issuer) for a client_credentials request. Raises: _Refused."""
    if tenant.lower() != SANDBOX_TENANT:
        raise _Refused(entra_error(
            400, "invalid_request", 90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud. Check with your subscription administrator, this may happen if there are no active "
            "subscriptions for the tenant.",
        ))
    grant = form.get("grant_type", "")
    if grant != "client_credentials":
        raise _Refused(entra_error(400, "unsupported_grant_type", 70003,
                                   f"The app requested an unsupported grant type '{grant}'."))
    client_id = form.get("client_id", "").lower()
    if client_id not in entra_state(hub).apps():
        raise _Refused(entra_error(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by any "
            "user in the tenant. You may have sent your authentication request to the wrong tenant.",
        ))
    if "client_assertion" in form:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise _Refused(entra_error(400, "invalid_request", 50027, "JWT token is invalid or malformed."))
        principal, issuer = _federated_principal(hub, client_id, form["client_assertion"])
        return principal, "client_assertion", issuer
    if "client_secret" in form:
        principal = entra_state(hub).apps()[client_id]
        expected = client_secret_of(hub.identity_header, principal)
        if not hmac.compare_digest(form["client_secret"].encode(), expected.encode()):
            raise _Refused(entra_error(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            ))
        return principal, "client_secret", ""
    raise _Refused(entra_error(
        401, "invalid_client", 7000216,
        "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
    ))


def token(req: Request, hub: Hub) -> Response:
    """``POST /{tenant}/oauth2/v2.0/token``: the client_credentials grant (assertion or secret)."""
    form = _form(req)
    try:
        principal, grant, issuer = _authenticate(hub, req.params["tenant"], form)
    except _Refused as refused:
        return refused.response
    scope = form.get("scope", "").split()
    if len(scope) != 1 or not scope[0].endswith("/.default"):
        return entra_error(
            400, "invalid_scope", 1002012,
            f"The provided value for scope {form.get('scope', '')} is not valid. Client credential flows must have "
            "a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    audience = audience_for_scope(scope[0])
    hub.state.record(service="issuance", method=req.method, path=req.path, status=200, grant=grant,
                     assertionIssuer=issuer, principal=principal, audience=audience,
                     userAgent=req.header("User-Agent") or "")
    return json_response(200, {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": mint_token(principal, audience, key=hub.signing_key, lifetime=TOKEN_LIFETIME),
    })


def openid_configuration(req: Request, hub: Hub) -> Response:
    """The tenant's OpenID discovery document (what MSAL reads before its first token request)."""
    base, tenant = hub.arm_endpoint.rstrip("/"), req.params["tenant"]
    return json_response(200, {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{SANDBOX_TENANT}/v2.0",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "tenant_region_scope": "EU",
    })


# -- control: the app registrations' federated credentials ----------------------------------------------
def list_federated(req: Request, hub: Hub) -> Response:
    if req.client_ip not in LOOPBACK:
        return arm_error(403, "Forbidden", "The sandbox control endpoint only answers loopback clients.")
    return json_response(200, {"value": [asdict(c) for c in entra_state(hub).credentials()]})


def add_federated(req: Request, hub: Hub) -> Response:
    """Add (or replace by name) a federated credential mapping an issuer + subject to a principal."""
    if req.client_ip not in LOOPBACK:
        return arm_error(403, "Forbidden", "The sandbox control endpoint only answers loopback clients.")
    body = req.json()
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body.get(k)
                                             for k in ("name", "principal", "issuer", "subject")):
        return arm_error(400, "InvalidControlRequest", "Give name, principal, issuer and subject (strings); "
                         "audience defaults to api://AzureADTokenExchange.")
    item = FederatedCredential(body["name"], body["principal"], body["issuer"], body["subject"],
                               str(body.get("audience") or EXCHANGE_AUDIENCE))
    entra_state(hub).add(item)
    return json_response(201, asdict(item))


_TENANT = r"/(?P<tenant>[0-9A-Za-z.-]{1,64})"
routes = [
    Route("POST", _TENANT + r"/oauth2/v2\.0/token", token, "identity"),
    Route("GET", _TENANT + r"/v2\.0/\.well-known/openid-configuration", openid_configuration, "identity"),
    Route("GET", r"/_sandbox/identity/federated-credentials", list_federated, "control"),
    Route("POST", r"/_sandbox/identity/federated-credentials", add_federated, "control"),
]
