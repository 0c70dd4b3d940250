"""The CI runners' OIDC issuers, as far as the sandbox needs them: GitHub Actions and Azure DevOps.

Both runners prove who they are to Entra ID with a short-lived OIDC token (audience
``api://AzureADTokenExchange``) that a federated identity credential on the app registration accepts.
GitHub hands it to a job with ``permissions: id-token: write`` on request (``GET
$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`` with ``Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN``
answers ``{"count", "value"}``, as ``@actions/core``'s ``getIDToken`` reads it); Azure DevOps answers
``POST {SYSTEM_OIDCREQUESTURI}?api-version=7.1&serviceConnectionId=…`` with ``{"oidcToken": …}`` when
the caller presents the job's ``System.AccessToken`` (what ``AzurePipelinesCredential`` sends).
The sandbox signs them with its own key (identity.sign_claims), so the Entra endpoint can tell them from forgeries.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from cicd_tools.sandbox.identity.identity import sign_claims
from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_REPOSITORY = "contoso/mlops"
GITHUB_SUBJECT = f"repo:{GITHUB_REPOSITORY}:ref:refs/heads/main"

GITHUB_PLAN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:github-plan"))
GITHUB_JOB_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:github-job"))
GITHUB_TOKEN_LIFETIME = 300
ID_TOKEN_REQUEST_PATH = (
    r"/(?P<hub>[^/]+)/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/"
    r"(?P<plan>[^/]+)/jobs/(?P<job>[^/]+)/idtoken"
)

ADO_ORGANIZATION = "contoso"
ADO_PROJECT = "mlops"
ADO_ORGANIZATION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:ado-organization"))
ADO_ISSUER = f"https://vstoken.dev.azure.com/{ADO_ORGANIZATION_ID}"
ADO_SERVICE_CONNECTION = "sc-mlops-sandbox"
ADO_SERVICE_CONNECTION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:ado-service-connection"))
ADO_SUBJECT = f"sc://{ADO_ORGANIZATION}/{ADO_PROJECT}/{ADO_SERVICE_CONNECTION}"
ADO_PLAN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:ado-plan"))
ADO_JOB_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "cicd-tools-sandbox:ado-job"))
ADO_TOKEN_LIFETIME = 900
OIDC_REQUEST_PATH = (
    r"/(?P<org>[^/]+)/(?P<project>[^/]+)/_apis/distributedtask/hubs/build/plans/(?P<plan>[^/]+)"
    r"/jobs/(?P<job>[^/]+)/oidctoken"
)


def derived_secret(identity_header: str, purpose: str) -> str:
    """A per-sandbox secret for ``purpose`` (the sandbox's random identity header is the root)."""
    return hmac.new(identity_header.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def system_access_token(identity_header: str) -> str:
    """The ``System.AccessToken`` of the sandbox's Azure DevOps job."""
    return derived_secret(identity_header, "azure-devops:system-access-token")


def github_request_token(identity_header: str) -> str:
    """The ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` of the sandbox's GitHub job."""
    return derived_secret(identity_header, "github:id-token-request-token")


def github_request_url(arm_endpoint: str) -> str:
    """``ACTIONS_ID_TOKEN_REQUEST_URL`` as the runner sets it (the query already holds ``api-version``)."""
    return (f"{arm_endpoint.rstrip('/')}/sandboxgh/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/"
            f"Actions/plans/{GITHUB_PLAN_ID}/jobs/{GITHUB_JOB_ID}/idtoken?api-version=2.0")


def oidc_request_uri(arm_endpoint: str) -> str:
    """``SYSTEM_OIDCREQUESTURI`` as the agent sets it, on the sandbox's port."""
    return (f"{arm_endpoint.rstrip('/')}/{ADO_ORGANIZATION}/{ADO_PROJECT}/_apis/distributedtask/hubs/build/plans/"
            f"{ADO_PLAN_ID}/jobs/{ADO_JOB_ID}/oidctoken")


def mint_oidc_token(
    issuer: str, subject: str, *, key: bytes, audience: str = EXCHANGE_AUDIENCE, lifetime: int = 3600,
    now: float | None = None, extra: dict[str, Any] | None = None,
) -> str:
    """An OIDC JWT as a CI runner's issuer would hand it to a job, signed with the sandbox's ``key``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iss": issuer, "sub": subject, "aud": audience, "iat": issued, "nbf": issued,
                              "exp": issued + lifetime, "jti": str(uuid.uuid4()), **(extra or {})}
    return sign_claims(claims, key)


def github_oidc_token(*, key: bytes, subject: str = GITHUB_SUBJECT, lifetime: int = 3600,
                      audience: str = EXCHANGE_AUDIENCE, now: float | None = None) -> str:
    """A GitHub Actions ID token for the sandbox repository's main branch (``key``: the sandbox's signing key)."""
    return mint_oidc_token(GITHUB_ISSUER, subject, key=key, audience=audience, lifetime=lifetime, now=now,
                           extra={"repository": GITHUB_REPOSITORY, "ref": "refs/heads/main",
                                  "event_name": "push", "runner_environment": "github-hosted"})


# -- the Azure DevOps OIDC request endpoint ---------------------------------------------------------------
def _ado_error(status: int, type_key: str, message: str) -> Response:
    return json_response(status, {"$id": "1", "innerException": None, "message": message,
                                  "typeName": f"Microsoft.TeamFoundation.{type_key}", "typeKey": type_key,
                                  "errorCode": 0, "eventId": 3000})


def request_oidc_token(req: Request, hub: Hub) -> Response:
    """``POST …/jobs/{job}/oidctoken?api-version=7.1&serviceConnectionId=ID`` with the job's access token."""
    token = req.bearer_token() or ""
    expected = system_access_token(hub.identity_header)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return _ado_error(401, "UnauthorizedRequestException",
                          "TF400813: The user '' is not authorized to access this resource.")
    if (req.params["org"], req.params["project"], req.params["plan"], req.params["job"]) != (
            ADO_ORGANIZATION, ADO_PROJECT, ADO_PLAN_ID, ADO_JOB_ID):
        return _ado_error(404, "JobNotFoundException", f"The job {req.params['job']} of plan "
                          f"{req.params['plan']} was not found in {req.params['org']}/{req.params['project']}.")
    version = req.param("api-version") or ""
    if not version.startswith("7."):
        return _ado_error(400, "VssVersionNotSpecifiedException" if not version else "VssVersionOutOfRangeException",
                          f"The api-version '{version}' is not supported for this request; use 7.1.")
    connection = req.param("serviceConnectionId") or ""
    if connection.lower() != ADO_SERVICE_CONNECTION_ID:
        return _ado_error(404, "ServiceEndpointNotFoundException",
                          f"Service connection '{connection}' was not found, or the pipeline is not authorized "
                          "to use it.")
    oidc = mint_oidc_token(ADO_ISSUER, ADO_SUBJECT, key=hub.signing_key, lifetime=ADO_TOKEN_LIFETIME)
    hub.state.record(service="issuance", method=req.method, path=req.path, status=200, grant="oidc-request",
                     issuer=ADO_ISSUER, subject=ADO_SUBJECT, userAgent=req.header("User-Agent") or "")
    return json_response(200, {"oidcToken": oidc})


def request_github_id_token(req: Request, hub: Hub) -> Response:
    """``GET …/idtoken?api-version=2.0&audience=A`` with the job's request token: ``{"count", "value"}``."""
    token = req.bearer_token() or ""
    if not hmac.compare_digest(token.encode(), github_request_token(hub.identity_header).encode()):
        return json_response(401, {"message": "Bad credentials"})
    if (req.params["plan"], req.params["job"]) != (GITHUB_PLAN_ID, GITHUB_JOB_ID):
        return json_response(404, {"message": "Not Found"})
    # Without an audience GitHub uses the repository owner's URL, which Entra's federation does not accept.
    audience = req.param("audience") or f"https://github.com/{GITHUB_REPOSITORY.split('/')[0]}"
    value = github_oidc_token(key=hub.signing_key, audience=audience, lifetime=GITHUB_TOKEN_LIFETIME)
    hub.state.record(service="issuance", method=req.method, path=req.path, status=200, grant="oidc-request",
                     issuer=GITHUB_ISSUER, subject=GITHUB_SUBJECT, userAgent=req.header("User-Agent") or "")
    return json_response(200, {"count": len(value), "value": value})


routes = [
    Route("POST", OIDC_REQUEST_PATH, request_oidc_token, "identity"),
    Route("GET", ID_TOKEN_REQUEST_PATH, request_github_id_token, "identity"),
]
