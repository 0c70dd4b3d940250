"""Management reads over a thin azure-core ARM pipeline: GET only, raw JSON, one cache per run.

Why not the four management SDKs (azure-mgmt-authorization, -msi, -containerservice,
-kubernetesconfiguration): see docs/commands/preflight.md (measured import cost and size).
Preflight needs a dozen GETs and a few raw fields; one ``ARMPipelineClient`` with the credential's
bearer policy does them with the same retry, proxy and TLS handling the SDKs use. This reader cannot
write: it has no other verb, and the sandbox's request log proves it in the tests.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from cicd_tools.support.errors import AuthenticationFailed, AzureError, Throttled

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)


class ArmReadError(Exception):
    """ARM answered a read with an error a check can report (403 no access, 404 missing, 400 refused)."""

    def __init__(self, status: int, code: str, message: str, path: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.path = status, code, message, path

    @property
    def summary(self) -> str:
        return f"{self.status} {self.code}"


class ArmReader(Protocol):
    """The reads preflight makes: one resource, or every page of a list."""

    def get(self, path: str, api_version: str, **query: str) -> dict[str, Any]: ...

    def list(self, path: str, api_version: str, **query: str) -> list[dict[str, Any]]: ...


class PipelineArmReader:
    """``ArmReader`` over ``azure.mgmt.core.ARMPipelineClient`` with the credential's bearer token.

    Raises from each read: ArmReadError for 400/403/404/409; AuthenticationFailed (401 or no token);
    Throttled (429/5xx after azure-core's retries); AzureError when ARM cannot be reached.
    """

    def __init__(self, credential: TokenCredential, endpoint: str, *, retries: int = 3,
                 timeout: float = 30.0) -> None:
        from azure.core.pipeline import policies
        from azure.mgmt.core import ARMPipelineClient
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

        self.endpoint = endpoint.rstrip("/")
        self.scope = f"{self.endpoint}/.default"
        self._credential = credential
        self._timeout = timeout
        self._client: Any = ARMPipelineClient(base_url=self.endpoint, policies=[
            policies.RequestIdPolicy(),
            policies.HeadersPolicy(),
            policies.UserAgentPolicy("cicd-tools-preflight"),
            policies.ProxyPolicy(),
            policies.ContentDecodePolicy(),
            policies.RetryPolicy(retry_total=retries, retry_backoff_factor=0.5, retry_backoff_max=8),
            ARMChallengeAuthenticationPolicy(credential, self.scope),
        ])
        self._cache: dict[str, Any] = {}

    def close(self) -> None:
        self._client.close()

    def principal(self) -> dict[str, str]:
        """Who the credential resolves to, from the claims of its ARM token (the token itself is never kept)."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._credential.get_token(self.scope).token
        except ClientAuthenticationError as err:
            raise AuthenticationFailed(f"the credential could not get an ARM token: {err.message}") from None
        claims = _claims(token)
        keys = ("oid", "appid", "upn", "name", "tid", "idtyp")
        return {k: str(claims[k]) for k in keys if claims.get(k)}

    def get(self, path: str, api_version: str, **query: str) -> dict[str, Any]:
        data = self._send(path, {"api-version": api_version, **query})
        return data if isinstance(data, dict) else {}

    def list(self, path: str, api_version: str, **query: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page: Any = self._send(path, {"api-version": api_version, **query})
        while True:
            items.extend(v for v in (page.get("value") or []) if isinstance(v, dict))
            next_link = page.get("nextLink")
            if not next_link or len(items) > 10_000:
                return items
            page = self._send(str(next_link), None)

    def _send(self, path: str, params: dict[str, str] | None) -> Any:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
        from azure.core.rest import HttpRequest

        url = path if path.startswith("https://") else f"{self.endpoint}{path}"
        key = url + "?" + json.dumps(params, sort_keys=True)
        if key in self._cache:
            return self._cache[key]
        request = HttpRequest("GET", url, params=params or {})
        try:
            response = self._client.send_request(request, connection_timeout=10, read_timeout=self._timeout)
        except ClientAuthenticationError as err:
            raise AuthenticationFailed(f"the credential could not get an ARM token: {err.message}") from None
        except (ServiceRequestError, ServiceResponseError) as err:
            raise AzureError(f"cannot reach Azure Resource Manager at {self.endpoint}: {err.message}",
                             hint="Check CICD_ARM_ENDPOINT and the network; for the sandbox, "
                             "`cicd-tools sandbox status`.") from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        status = response.status_code
        log.debug("GET %s -> %s", path, status)
        if status < 300:
            self._cache[key] = body
            return body
        error = body.get("error") if isinstance(body, dict) else None
        code = str((error or {}).get("code") or "Unknown")
        message = str((error or {}).get("message") or response.text()[:300])
        if status == 401:
            raise AuthenticationFailed(f"ARM refused the token for GET {path}: {code}: {message}", code=code)
        if status == 429 or status >= 500:
            raise Throttled(f"ARM kept failing GET {path}: {status} {code}: {message}", code=code)
        raise ArmReadError(status, code, message, path)


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (no signature check: it only says whose token this is)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
