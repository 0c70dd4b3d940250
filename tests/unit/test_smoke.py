"""Smoke test and diagnosis: each data-plane failure is classified by Azure's error code with its fix."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import NameResolutionError

from cicd_tools.cli.main import main
from cicd_tools.storage.smoke import diagnose, make_list_probe, smoke_test
from cicd_tools.support.errors import NetworkDenied, PermissionMissing

ACCOUNT_URL = "https://acct.blob.core.windows.net"
CONTAINER = "ml-globals"
LIST = re.compile(rf"{ACCOUNT_URL}/{CONTAINER}\?.*comp=list.*")
BLOB = re.compile(rf"{ACCOUNT_URL}/{CONTAINER}/_cicd-smoke/.*")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("header.payload.sig", 4_102_444_800)


def service() -> Any:
    from azure.storage.blob import BlobServiceClient

    # retry_total=0: the storage SDK would otherwise retry connection errors with real sleeps.
    return BlobServiceClient(ACCOUNT_URL, credential=StaticCredential(), retry_total=0)


def storage_error(status: int, code: str) -> dict[str, Any]:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>denied</Message></Error>'
    return {"status": status, "body": body, "headers": {"x-ms-error-code": code}, "content_type": "application/xml"}


EMPTY_LIST = (
    '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://acct.blob.core.windows.net/"'
    ' ContainerName="ml-globals"><MaxResults>1</MaxResults><Blobs /><NextMarker /></EnumerationResults>'
)
HEADERS = {"ETag": '"0x8D"', "Last-Modified": "Sun, 01 Mar 2026 12:00:00 GMT"}


class BlobStore:
    """Enough of the blob service for the smoke steps: list, put, ranged get, delete."""

    def __init__(self, corrupt: bool = False) -> None:
        self.blobs: dict[str, bytes] = {}
        self.corrupt = corrupt

    def install(self) -> None:
        responses.add(responses.GET, LIST, body=EMPTY_LIST, content_type="application/xml")
        responses.add_callback(responses.PUT, BLOB, callback=self.put)
        responses.add_callback(responses.GET, BLOB, callback=self.get)
        responses.add_callback(responses.DELETE, BLOB, callback=self.delete)

    def put(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.blobs[request.path_url] = request.body if isinstance(request.body, bytes) else request.body.read()
        return 201, HEADERS, b""

    def get(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        data = self.blobs[request.path_url]
        if self.corrupt:
            data = data.upper()
        headers = {**HEADERS, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "x-ms-blob-type": "BlockBlob"}
        return 206, headers, data

    def delete(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.blobs.pop(request.path_url, None)
        return 202, {}, b""


@responses.activate
def test_a_working_data_plane_passes_every_step_and_leaves_no_probe_blob() -> None:
    store = BlobStore()
    store.install()
    result = smoke_test(service(), CONTAINER, make_id=lambda: "fixed")
    assert result.usable and result.failure is None
    assert [s.step for s in result.steps] == ["list", "write", "read", "delete"]
    assert all(s.ok and s.latency_ms is not None for s in result.steps)
    assert result.blob_name == "_cicd-smoke/fixed.txt"
    assert store.blobs == {}


@responses.activate
def test_a_firewall_denial_is_classified_as_authorization_failure_and_later_steps_skip() -> None:
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationFailure"))
    result = smoke_test(service(), CONTAINER)
    assert not result.usable
    failure = result.failure
    assert failure is not None and (failure.step, failure.category, failure.code) == (
        "list",
        "firewall",
        "AuthorizationFailure",
    )
    assert "cicd-tools firewall open" in (failure.fix or "") and "Azure region" in (failure.fix or "")
    assert [s.skipped for s in result.steps] == [False, True, True, True]


@responses.activate
def test_a_missing_role_on_write_is_classified_as_an_rbac_gap() -> None:
    responses.add(responses.GET, LIST, body=EMPTY_LIST, content_type="application/xml")
    responses.add(responses.PUT, BLOB, **storage_error(403, "AuthorizationPermissionMismatch"))
    result = smoke_test(service(), CONTAINER)
    failure = result.failure
    assert failure is not None and (failure.step, failure.category) == ("write", "rbac")
    assert "Storage Blob Data Contributor" in (failure.fix or "")
    assert [s.ok for s in result.steps[:1]] == [True]


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (401, "InvalidAuthenticationInfo", "authentication"),
        (403, "AuthenticationFailed", "authentication"),
        (403, "KeyBasedAuthenticationNotPermitted", "shared-key"),
        (404, "ContainerNotFound", "container"),
        (503, "ServerBusy", "throttled"),
    ],
)
@responses.activate
def test_each_azure_error_code_maps_to_its_category(status: int, code: str, category: str) -> None:
    responses.add(responses.GET, LIST, **storage_error(status, code))
    failure = smoke_test(service(), CONTAINER).failure
    assert failure is not None and (failure.category, failure.code) == (category, code)


@responses.activate
def test_name_resolution_failure_points_at_private_endpoint_dns() -> None:
    dns = requests.exceptions.ConnectionError(
        NameResolutionError("acct.blob.core.windows.net", None, "Name or service not known")
    )  # type: ignore[arg-type]
    responses.add(responses.GET, LIST, body=dns)
    failure = smoke_test(service(), CONTAINER).failure
    assert failure is not None and failure.category == "dns"
    assert "privatelink" in (failure.fix or "")


@responses.activate
def test_a_read_timeout_is_classified_as_timeout() -> None:
    responses.add(responses.GET, LIST, body=requests.exceptions.ReadTimeout("read timed out"))
    failure = smoke_test(service(), CONTAINER).failure
    assert failure is not None and failure.category == "timeout"


@responses.activate
def test_content_that_reads_back_different_fails_and_the_probe_blob_is_still_deleted() -> None:
    store = BlobStore(corrupt=True)
    store.install()
    result = smoke_test(service(), CONTAINER)
    failure = result.failure
    assert failure is not None and (failure.step, failure.category) == ("read", "content")
    assert result.steps[-1].step == "delete" and result.steps[-1].ok
    assert store.blobs == {}


@responses.activate
def test_the_probe_keeps_polling_on_authorization_failure_and_stops_on_permission_mismatch() -> None:
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationFailure"))
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationPermissionMismatch"))
    probe = make_list_probe(service(), CONTAINER, rbac_grace=0)
    with pytest.raises(NetworkDenied):
        probe()
    with pytest.raises(PermissionMissing):
        probe()


@responses.activate
def test_the_probe_waits_out_a_fresh_role_for_the_rbac_grace_then_calls_it_missing() -> None:
    # Azure RBAC: a new assignment can take minutes to take effect, so a mismatch is "not yet" for a while.
    for _ in range(3):
        responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationPermissionMismatch"))
    now = [100.0]
    probe = make_list_probe(service(), CONTAINER, rbac_grace=10.0, clock=lambda: now[0])
    assert probe() is False
    now[0] += 9.5
    assert probe() is False
    now[0] += 1.0
    with pytest.raises(PermissionMissing):
        probe()


@responses.activate
def test_smoke_retries_a_permission_mismatch_within_the_rbac_grace_and_passes_once_the_role_lands() -> None:
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationPermissionMismatch"))
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationPermissionMismatch"))
    responses.add(responses.GET, LIST, body=EMPTY_LIST, content_type="application/xml")
    responses.add(responses.PUT, BLOB, status=201)
    responses.add(responses.GET, BLOB, body=b"")
    responses.add(responses.DELETE, BLOB, status=202)
    sleeps: list[float] = []
    result = smoke_test(service(), CONTAINER, denied_budget=30.0, sleep=sleeps.append, make_id=lambda: "x")
    assert result.steps[0].ok and len(sleeps) == 2


@responses.activate
def test_a_missing_container_still_proves_the_network_path_to_the_probe() -> None:
    responses.add(responses.GET, LIST, **storage_error(404, "ContainerNotFound"))
    assert make_list_probe(service(), CONTAINER)() is True


# --- diagnose ------------------------------------------------------------------------------------


def account(**props: Any) -> dict[str, Any]:
    acls = {
        "bypass": "None",
        "defaultAction": "Deny",
        "ipRules": [{"value": "10.0.0.0/24", "action": "Allow"}, {"value": "52.1.1.1", "action": "Allow"}],
        "virtualNetworkRules": [],
        "resourceAccessRules": [],
        "somethingNew": {"x": 1},
    }
    tags = {
        "cicd-fw-old": f"52.1.1.1|{(NOW - timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}|0",
        "cicd-fw-soon": f"52.1.1.2|{(NOW + timedelta(minutes=5)).strftime('%Y-%m-%dT%H:%M:%SZ')}|0",
        "cicd-fw-fine": f"52.1.1.3|{(NOW + timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%SZ')}|0",
    }
    return {"name": "acct", "tags": tags, "properties": {"networkAcls": acls, **props}}


def test_diagnose_names_what_will_bite_and_returns_network_acls_exactly() -> None:
    data = account(allowSharedKeyAccess=False, publicNetworkAccess="Enabled")
    report = diagnose(data, NOW)
    codes = {f.code: f for f in report.findings}
    assert {
        "SharedKeyDisabled",
        "DefaultActionDeny",
        "NoAzureServicesBypass",
        "PrivateIpRule",
        "ExpiredLease",
        "LeaseExpiringSoon",
        "Lease",
        "IpRuleCount",
    } <= set(codes)
    assert "10.0.0.0/24" in codes["PrivateIpRule"].message
    assert "cicd-tools firewall sweep" in codes["ExpiredLease"].message
    assert report.to_dict()["networkAcls"] == data["properties"]["networkAcls"]
    assert json.loads(json.dumps(report.to_dict()))["networkAcls"]["somethingNew"] == {"x": 1}


def test_diagnose_flags_disabled_public_access_and_rule_count_near_the_limit() -> None:
    data = account(publicNetworkAccess="Disabled")
    data["properties"]["networkAcls"]["ipRules"] = [{"value": f"52.0.{i // 250}.{i % 250 + 1}"} for i in range(380)]
    codes = {f.code: f for f in diagnose(data, NOW).findings}
    assert codes["PublicNetworkAccessDisabled"].level == "error"
    assert codes["IpRuleCount"].level == "warning" and "380 of 400" in codes["IpRuleCount"].message
    assert "SharedKeyDisabled" not in codes  # null means shared key is allowed


# --- CLI -----------------------------------------------------------------------------------------

CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0c2VjcmV0c2VjcmV0;"
    "EndpointSuffix=core.windows.net"
)


@responses.activate
def test_storage_smoke_exits_3_with_the_classified_failure_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    responses.add(responses.GET, LIST, **storage_error(403, "AuthorizationFailure"))
    code = main(
        [
            "--output",
            "json",
            "--ci",
            "plain",
            "storage",
            "smoke",
            "--auth-mode",
            "key",
            "--connection-string",
            CONNECTION,
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert out["usable"] is False and out["failure"]["code"] == "AuthorizationFailure"
    assert out["steps"][0]["category"] == "firewall"


def test_retry_while_denied_gives_a_missing_role_only_the_rbac_grace() -> None:
    from cicd_tools.storage.denied import retry_while_denied

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def refused() -> None:
        raise PermissionMissing("403", code="AuthorizationPermissionMismatch")

    with pytest.raises(PermissionMissing):
        retry_while_denied(refused, "smoke list", budget=30.0, rbac_grace=3.0, sleep=sleep, clock=lambda: now[0])
    assert 1.5 <= now[0] <= 3.0  # retried, but within the grace, not the 30 s firewall budget
    now[0] = 0.0
    with pytest.raises(PermissionMissing):
        retry_while_denied(refused, "smoke list", budget=30.0, rbac_grace=0.0, sleep=sleep, clock=lambda: now[0])
    assert now[0] == 0.0  # grace 0: a missing role is a verdict at once


@pytest.mark.parametrize(("value", "seconds"), [(None, 10.0), ("0", 0.0), ("5s", 5.0), ("1m", 60.0)])
def test_the_rbac_grace_comes_from_cicd_rbac_grace(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    from cicd_tools.storage.denied import default_rbac_grace

    if value is not None:
        monkeypatch.setenv("CICD_RBAC_GRACE", value)
    assert default_rbac_grace() == seconds
