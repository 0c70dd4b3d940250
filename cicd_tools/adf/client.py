"""Data Factory management calls: one typed facade over azure-mgmt-datafactory, one retry loop, a call counter.

Why the SDK: it is the official client (auth, ARM error shapes, api-version 2018-06-01) and its TypeSpec
models are mappings over the raw JSON, so resources go out and come back with every field, modelled or not.
Its own RetryPolicy is switched off per call (``retry_total=0``): ``ArmCalls`` is the only retrier, so
``Retry-After`` is honoured exactly, the wait's timeout holds, and every HTTP attempt is counted (the number
of ARM calls is part of ``adf run``'s report). Nothing here imports the SDK at module level.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from cicd_tools.storage.deadline import CallTimedOut, bounded_call
from cicd_tools.support.errors import AzureError, CicdError, Throttled, TimeoutExpired, UsageError
from cicd_tools.support.tls import certificate_fix, is_certificate_failure

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE = (429, 500, 502, 503, 504)
# Factory child resources in deploy order (what a resource may reference is created before it).
KINDS = ("managedVirtualNetworks", "integrationRuntimes", "managedPrivateEndpoints", "linkedServices", "datasets",
         "pipelines", "triggers")


@dataclass(frozen=True)
class FactoryRef:
    """Which factory (the management client is bound to the subscription)."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.DataFactory/factories/{self.name}")


class FactoryApi(Protocol):
    """The Data Factory calls the toolkit makes, JSON in and out (one HTTP request each)."""

    def get_factory(self, ref: FactoryRef) -> dict[str, Any]: ...

    def create_run(self, ref: FactoryRef, pipeline: str, parameters: Mapping[str, Any]) -> str: ...

    def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]: ...

    def cancel_run(self, ref: FactoryRef, run_id: str, *, recursive: bool = True) -> None: ...

    def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def list_resources(self, ref: FactoryRef, kind: str) -> list[dict[str, Any]]: ...

    def put_resource(self, ref: FactoryRef, kind: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete_resource(self, ref: FactoryRef, kind: str, name: str) -> None: ...

    def set_trigger(self, ref: FactoryRef, name: str, *, started: bool) -> None: ...

    def put_global_parameters(self, ref: FactoryRef, parameters: Mapping[str, Any]) -> dict[str, Any]: ...


def _raw(pipeline_response: Any, _deserialized: Any, _headers: Any) -> dict[str, Any]:
    data = pipeline_response.http_response.json() if pipeline_response.http_response.text() else {}
    return data if isinstance(data, dict) else {}


def _as_dict(item: Any) -> dict[str, Any]:
    return dict(item.as_dict()) if hasattr(item, "as_dict") else dict(item)


MANAGED_VNET = "default"


class MgmtDataFactory:
    """``FactoryApi`` over ``DataFactoryManagementClient`` (azure-mgmt-datafactory 10)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_factory(self, ref: FactoryRef) -> dict[str, Any]:
        return self._one(self.client.factories.get(ref.resource_group, ref.name, cls=_raw, retry_total=0))

    def create_run(self, ref: FactoryRef, pipeline: str, parameters: Mapping[str, Any]) -> str:
        answer = self.client.pipelines.create_run(ref.resource_group, ref.name, pipeline, parameters=dict(parameters),
                                                  cls=_raw, retry_total=0)
        return str(answer.get("runId", ""))

    def get_run(self, ref: FactoryRef, run_id: str) -> dict[str, Any]:
        return self._one(self.client.pipeline_runs.get(ref.resource_group, ref.name, run_id, cls=_raw,
                                                       retry_total=0))

    def cancel_run(self, ref: FactoryRef, run_id: str, *, recursive: bool = True) -> None:
        self.client.pipeline_runs.cancel(ref.resource_group, ref.name, run_id, is_recursive=recursive,
                                         retry_total=0)

    def query_activity_runs(self, ref: FactoryRef, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._one(self.client.activity_runs.query_by_pipeline_run(
            ref.resource_group, ref.name, run_id, dict(body), cls=_raw, retry_total=0))

    def _ops(self, kind: str) -> Any:
        return {
            "managedVirtualNetworks": self.client.managed_virtual_networks,
            "integrationRuntimes": self.client.integration_runtimes,
            "managedPrivateEndpoints": self.client.managed_private_endpoints,
            "linkedServices": self.client.linked_services,
            "datasets": self.client.datasets,
            "pipelines": self.client.pipelines,
            "triggers": self.client.triggers,
        }[kind]

    def _args(self, ref: FactoryRef, kind: str) -> tuple[str, ...]:
        base = (ref.resource_group, ref.name)
        return (*base, MANAGED_VNET) if kind == "managedPrivateEndpoints" else base

    def list_resources(self, ref: FactoryRef, kind: str) -> list[dict[str, Any]]:
        return [_as_dict(item) for item in self._ops(kind).list_by_factory(*self._args(ref, kind), retry_total=0)]

    def put_resource(self, ref: FactoryRef, kind: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._one(self._ops(kind).create_or_update(*self._args(ref, kind), name, dict(body), cls=_raw,
                                                          retry_total=0))

    def delete_resource(self, ref: FactoryRef, kind: str, name: str) -> None:
        self._ops(kind).delete(*self._args(ref, kind), name, retry_total=0)

    def set_trigger(self, ref: FactoryRef, name: str, *, started: bool) -> None:
        ops = self.client.triggers
        poller = (ops.begin_start if started else ops.begin_stop)(ref.resource_group, ref.name, name,
                                                                  retry_total=0)
        poller.result()

    def put_global_parameters(self, ref: FactoryRef, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return self._one(self.client.global_parameters.create_or_update(
            ref.resource_group, ref.name, "default", {"properties": dict(parameters)}, cls=_raw, retry_total=0))

    @staticmethod
    def _one(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else _as_dict(value)


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def retry_after(exc: BaseException) -> float | None:
    """Seconds from an error response's ``Retry-After`` (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, (parsed - datetime.now(UTC)).total_seconds()) if parsed else None


def error_code(exc: BaseException) -> str | None:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return str(code) if code else None


class ArmCalls:
    """Runs FactoryApi calls: counts every attempt, retries 429/5xx and dropped connections with backoff.

    The one retry policy of ``adf run``, ``aml verify`` and ``model mirror`` (and what ``flow`` runs of them).
    With a deadline (``deadline`` here, the command's, or per call; a ``clock()`` value, the earliest wins),
    transient failures are retried until it: ``Retry-After`` is honoured while it fits (never retried
    sooner), a backoff that does not fit gets one last attempt at the deadline, and each attempt is bounded
    by the time left (``attempt_floor`` at least), so a hung request cannot outlive it; then DeadlineReached
    (exit 6) names what was last seen. Without a deadline, ``retries`` attempts per call (two for a refused
    connection).
    """

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 retries: int = 6, base_delay: float = 1.0, max_delay: float = 30.0, deadline: float | None = None,
                 attempt_floor: float = 2.0) -> None:
        self.sleep = sleep
        self.clock = clock
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.deadline = deadline
        self.attempt_floor = attempt_floor
        self.calls = 0
        self.throttled = 0
        self.last_seen: str | None = None  # the transient failure of the last call, if it failed: what a timeout names

    def __call__(self, what: str, call: Callable[[], T], *, deadline: float | None = None) -> T:
        """Raises: CicdError (classified) when the call fails for good; DeadlineReached at the deadline."""
        ends = [d for d in (deadline, self.deadline) if d is not None]
        end = min(ends) if ends else None
        attempt = 0
        last_try = False
        while True:
            self.calls += 1
            try:
                if end is None:
                    result = call()
                else:
                    result = self._bounded(call, max(end - self.clock(), self.attempt_floor), what)
                self.last_seen = None
                return result
            except CicdError:
                raise
            except Exception as exc:  # classified below; the SDK raises azure-core errors
                status = status_of(exc)
                timed_out = isinstance(exc, CallTimedOut)
                unreachable = status is None and (timed_out or _is_connection_error(exc))
                # a certificate failure is a configuration fault (the sandbox CA not trusted), never transient
                transient = status in RETRYABLE or (unreachable and not is_certificate_failure(exc))
                if not transient:
                    raise classify(exc, what) from None
                self.last_seen = seen = _seen(exc, status)
                if status == 429:
                    self.throttled += 1
                # A refused connection (nothing sent: DNS, refused, TLS) rarely heals in seconds: two retries,
                # then say so, deadline or not. A dropped one (sent, no answer) is retried like a 503.
                refused = unreachable and not timed_out and type(exc).__name__ not in _ANSWER_LOST
                budget = min(self.retries, 2) if unreachable else self.retries
                if (end is None or refused) and attempt >= budget:
                    raise classify(exc, what) from None
                attempt += 1
                wait = min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                hinted = retry_after(exc)
                if hinted is not None:
                    wait = max(wait, hinted)
                if end is not None:
                    left = end - self.clock()
                    if last_try or left <= 0:
                        raise DeadlineReached(f"{what}: still failing at the deadline; last seen: {seen}",
                                              code="Timeout") from None
                    if wait > left:
                        self.sleep(left)  # Retry-After never shortened: wait out the deadline
                        if hinted is not None and hinted > left:
                            raise DeadlineReached(
                                f"{what}: still failing at the deadline; last seen: {seen} (Retry-After {hinted:g} s "
                                f"did not fit in the {left:.1f} s left)", code="Timeout") from None
                        last_try = True
                        continue
                log.info("%s: %s; retrying in %.1fs (attempt %d%s)", what, seen, wait, attempt,
                         "" if end is not None else f" of {budget}")
                self.sleep(wait)

    @staticmethod
    def _bounded(call: Callable[[], T], seconds: float, what: str) -> T:
        return bounded_call(call, seconds, what)


def _seen(exc: BaseException, status: int | None) -> str:
    """What a failed attempt looked like, for the timeout message: ``HTTP 429 TooManyRequests`` ..."""
    if isinstance(exc, CallTimedOut):
        return f"no answer within {exc.waited:.1f} s"
    if status is not None:
        code = error_code(exc)
        return f"HTTP {status}" + (f" {code}" if code else "")
    return f"connection failed ({type(exc).__name__})"


_ANSWER_LOST = ("ServiceResponseError", "ServiceResponseTimeoutError")  # the request went out, no answer came


def _is_connection_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return (name in ("ServiceRequestError", "ServiceRequestTimeoutError", *_ANSWER_LOST)
            or isinstance(exc, ConnectionError))


class DeadlineReached(TimeoutExpired):
    """A call kept failing transiently (429/5xx) until the caller's deadline."""


class FactoryNotFound(UsageError):
    """The factory, pipeline or run named does not exist."""

    default_hint = "Check --factory / CICD_FACTORY, --resource-group and the pipeline or run id."


class PipelineNotFound(FactoryNotFound):
    """The factory exists; the pipeline named is not published in it."""

    default_hint = ("Publish it (`cicd-tools adf deploy adf/ --factory NAME`: createRun runs the PUBLISHED factory),"
                    " or check --pipeline.")


class RunNotFound(FactoryNotFound):
    """The factory exists; the pipeline run named is not in it (runs are kept 45 days)."""

    default_hint = "Check the run id (runs are kept 45 days) and --factory / CICD_FACTORY."


def _not_found(what: str, code: str | None, message: str) -> FactoryNotFound:
    """The class naming what is missing: a factory answers ResourceNotFound (ARM), its children NotFound."""
    text = f"{what}: not found ({code or 'NotFound'}): {message}"
    factory_missing = code == "ResourceNotFound" or "/factories/" in message
    if factory_missing:
        return FactoryNotFound(text, code=code)
    if what.startswith("createRun"):
        return PipelineNotFound(text, code=code)
    if what.startswith(("get pipeline run", "cancel pipeline run", "query activity runs")):
        return RunNotFound(text, code=code)
    return FactoryNotFound(text, code=code)


def classify(exc: BaseException, what: str) -> CicdError:
    """An SDK exception as a toolkit error: 404 -> exit 2 (a name is wrong), 429 -> Throttled, else AzureError."""
    status = status_of(exc)
    code = error_code(exc)
    message = getattr(getattr(exc, "error", None), "message", None) or str(exc).splitlines()[0]
    if status == 404:
        return _not_found(what, code, message)
    if status == 400:
        return UsageError(f"{what}: refused ({code or 'BadRequest'}): {message}", code=code,
                          hint="Fix the value the message names (pipeline parameters: --param NAME=VALUE).")
    if status == 429:
        return Throttled(f"{what}: throttled beyond the retry budget: {message}", code=code,
                         hint="Retry later, or raise --poll: other pipelines may be polling the same factory "
                         "(ARM and ADF limit calls per principal and per factory).")
    if status is None and type(exc).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError"):
        from cicd_tools.support.errors import AuthenticationFailed

        return AuthenticationFailed(f"{what}: no token for the management endpoint: {message}",
                                    code="ClientAuthenticationError")
    if status is None and _is_connection_error(exc) and is_certificate_failure(exc):
        import os

        return AzureError(f"{what}: the management endpoint's certificate is not trusted: {message}",
                          code="CertificateVerifyFailed", hint=certificate_fix(os.environ))
    if status is None and _is_connection_error(exc):
        return AzureError(f"{what}: could not reach the management endpoint: {message}", code="ServiceRequestError",
                          hint="Check CICD_ARM_ENDPOINT / the network; for the sandbox: `cicd-tools sandbox status`.")
    if status == 403:
        return AzureError(f"{what}: 403 {code or 'AuthorizationFailed'}: {message}", code=code or "AuthorizationFailed",
                          hint="Give the identity CI uses 'Data Factory Contributor' on the factory or its resource "
                          "group (`cicd-tools doctor` shows which identity that is).")
    if status == 401:
        from cicd_tools.support.errors import AuthenticationFailed

        return AuthenticationFailed(f"{what}: 401 {code or ''}: {message}".replace("  ", " "), code=code)
    return AzureError(f"{what}: {status or ''} {code or type(exc).__name__}: {message}".strip(), code=code)


def query_window(run: Mapping[str, Any], now: datetime | None = None) -> tuple[str, str]:
    """A ``lastUpdatedAfter/Before`` window that surely holds every activity run of ``run``.

    AZURE_FACTS.md §5: the window must be wider than the run's start and end; one day either side.
    """
    start = parse_time(run.get("runStart")) or parse_time(run.get("lastUpdated")) or (now or datetime.now(UTC))
    end = parse_time(run.get("runEnd")) or (now or datetime.now(UTC))
    return _iso(start - timedelta(days=1)), _iso(end + timedelta(days=1))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().rstrip("Zz")
    head, _, frac = text.partition(".")
    try:
        moment = datetime.fromisoformat(f"{head}.{frac[:6]}" if frac else head)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def query_activity_runs(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run: Mapping[str, Any],
                        *, filters: Iterable[Mapping[str, Any]] = (), deadline: float | None = None,
                        now: datetime | None = None) -> list[dict[str, Any]]:
    """Every activity run of ``run`` (all ``continuationToken`` pages), in the service's order."""
    after, before = query_window(run, now)
    body: dict[str, Any] = {"lastUpdatedAfter": after, "lastUpdatedBefore": before}
    if filters:
        body["filters"] = [dict(f) for f in filters]
    out: list[dict[str, Any]] = []
    run_id = str(run.get("runId"))
    while True:
        page = calls(f"query activity runs of {run_id}", functools.partial(api.query_activity_runs, ref, run_id, body),
                     deadline=deadline)
        out.extend(item for item in page.get("value") or [] if isinstance(item, dict))
        token = page.get("continuationToken")
        if not token:
            return out
        body = {**body, "continuationToken": token}


def datafactory_client(credential: Any, subscription_id: str, arm_endpoint: str) -> Any:
    """The one place a DataFactoryManagementClient is built (``adf`` commands, ``aml verify``, ``model mirror``).

    Raises: EnvironmentProblem when azure-mgmt-datafactory cannot be imported.
    """
    try:
        from azure.mgmt.datafactory import DataFactoryManagementClient
    except ImportError as exc:
        from cicd_tools.support.errors import EnvironmentProblem

        raise EnvironmentProblem(f"azure-mgmt-datafactory cannot be imported: {exc}") from None
    arm = arm_endpoint.rstrip("/")
    return DataFactoryManagementClient(credential, subscription_id, base_url=arm,
                                       credential_scopes=[f"{arm}/.default"])
