"""The sandbox cloud against the real SDKs: ARM storage, managed identity, the blob firewall and RBAC, faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import IPRule, NetworkRuleSet, StorageAccountUpdateParameters
from azure.storage.blob import BlobServiceClient, LinearRetry

from cicd_tools.sandbox.identity.identity import SandboxCredential, decode_token
from cicd_tools.sandbox.runtime import Sandbox

CONTAINER = "ml-globals"


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (the firewall propagates asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def mgmt(sb: Sandbox, credential: Any = None) -> StorageManagementClient:
    return StorageManagementClient(
        credential or ManagedIdentityCredential(), sb.subscription_id, base_url=sb.arm_endpoint,
        credential_scopes=[sb.arm_endpoint + "/.default"],
    )


def blobs(endpoint: str, credential: Any = None, **kwargs: Any) -> BlobServiceClient:
    kwargs.setdefault("retry_policy", LinearRetry(backoff=0.05, random_jitter_range=0, retry_total=2))
    return BlobServiceClient(endpoint, credential=credential or ManagedIdentityCredential(), **kwargs)


def error_code(call: Callable[[], Any]) -> str | None:
    with pytest.raises(HttpResponseError) as info:
        call()
    return info.value.error_code


def reachable(service: BlobServiceClient) -> bool:
    try:
        list(service.list_containers())
        return True
    except HttpResponseError as err:
        if err.error_code != "AuthorizationFailure":
            raise
        return False


def open_agent(sb: Sandbox) -> None:
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": sb.origin().ip}]})


def patch_rules(sb: Sandbox, client: StorageManagementClient, values: list[str]) -> Any:
    update = StorageAccountUpdateParameters(network_rule_set=NetworkRuleSet(
        default_action="Deny", ip_rules=[IPRule(ip_address_or_range=v) for v in values]))
    return client.storage_accounts.update(sb.resource_group, sb.storage_account, update)


# -- ARM: Microsoft.Storage ---------------------------------------------------------------------------------
def test_arm_get_returns_the_preprovisioned_private_account(sandbox_env: Sandbox) -> None:
    account = mgmt(sandbox_env).storage_accounts.get_properties(sandbox_env.resource_group,
                                                                sandbox_env.storage_account)
    assert account.id.endswith(f"/resourceGroups/rg-mlops-sandbox/providers/Microsoft.Storage/storageAccounts/"
                               f"{sandbox_env.storage_account}")
    assert account.network_rule_set.default_action == "Deny"
    assert account.network_rule_set.ip_rules == []
    assert account.network_rule_set.bypass == "AzureServices"
    assert account.public_network_access == "Enabled"
    assert account.allow_shared_key_access is False
    assert account.primary_endpoints.blob == sandbox_env.blob_endpoint + "/"
    assert account.provisioning_state == "Succeeded"


def test_arm_patch_replaces_the_ip_rule_list_and_keeps_other_network_fields(sandbox_env: Sandbox) -> None:
    client = mgmt(sandbox_env)
    patch_rules(sandbox_env, client, ["20.1.2.3", "20.9.0.0/16"])
    result = patch_rules(sandbox_env, client, ["20.4.5.6"])
    assert [r.ip_address_or_range for r in result.network_rule_set.ip_rules] == ["20.4.5.6"]
    assert result.network_rule_set.bypass == "AzureServices"  # not carried by the PATCH: kept
    stored = sandbox_env.control.account()["properties"]["networkAcls"]
    assert stored["ipRules"] == [{"value": "20.4.5.6", "action": "Allow"}]


def test_arm_patch_replaces_tags_wholesale(sandbox_env: Sandbox) -> None:
    client = mgmt(sandbox_env)
    rg, name = sandbox_env.resource_group, sandbox_env.storage_account
    client.storage_accounts.update(rg, name, StorageAccountUpdateParameters(tags={"a": "1", "b": "2"}))
    result = client.storage_accounts.update(rg, name, StorageAccountUpdateParameters(tags={"c": "3"}))
    assert result.tags == {"c": "3"}


def test_two_concurrent_read_modify_writes_lose_the_first_writers_rule(sandbox_env: Sandbox) -> None:
    first, second = mgmt(sandbox_env), mgmt(sandbox_env)
    rg, name = sandbox_env.resource_group, sandbox_env.storage_account
    seen_by_first = first.storage_accounts.get_properties(rg, name).network_rule_set
    seen_by_second = second.storage_accounts.get_properties(rg, name).network_rule_set
    seen_by_first.ip_rules.append(IPRule(ip_address_or_range="20.0.0.1"))
    seen_by_second.ip_rules.append(IPRule(ip_address_or_range="20.0.0.2"))
    first.storage_accounts.update(rg, name, StorageAccountUpdateParameters(network_rule_set=seen_by_first))
    second.storage_accounts.update(rg, name, StorageAccountUpdateParameters(network_rule_set=seen_by_second))
    final = first.storage_accounts.get_properties(rg, name).network_rule_set
    assert [r.ip_address_or_range for r in final.ip_rules] == ["20.0.0.2"]


@pytest.mark.parametrize("values", [["10.0.0.1"], ["1.2.3.4/32"], ["127.0.0.1"],
                                    [f"20.0.{i // 250}.{i % 250 + 1}" for i in range(401)]],
                         ids=["rfc1918", "slash32", "loopback", "401-rules"])
def test_arm_refuses_invalid_ip_rules_like_azure(sandbox_env: Sandbox, values: list[str]) -> None:
    with pytest.raises(HttpResponseError) as info:
        patch_rules(sandbox_env, mgmt(sandbox_env), values)
    assert info.value.status_code == 400
    assert info.value.error.code == "InvalidValuesForRequestParameters"
    assert sandbox_env.control.account()["properties"]["networkAcls"]["ipRules"] == []


def test_arm_accepts_400_rules(sandbox_env: Sandbox) -> None:
    values = [f"20.0.{i // 250}.{i % 250 + 1}" for i in range(400)]
    assert len(patch_rules(sandbox_env, mgmt(sandbox_env), values).network_rule_set.ip_rules) == 400


def _account_url(sb: Sandbox, version: str | None = "2026-09-01") -> str:
    query = f"?api-version={version}" if version else ""
    return f"{sb.arm_endpoint}/subscriptions/{sb.subscription_id}/resourceGroups/{sb.resource_group}" \
           f"/providers/Microsoft.Storage/storageAccounts/{sb.storage_account}{query}"


def _arm_token(sb: Sandbox, principal: str = "ci-pipeline") -> dict[str, str]:
    return {"Authorization": "Bearer " + SandboxCredential(principal).get_token(sb.arm_endpoint + "/.default").token}


def test_arm_answers_401_without_a_token(sandbox_env: Sandbox) -> None:
    response = requests.get(_account_url(sandbox_env), timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(("version", "code"), [(None, "MissingApiVersionParameter"),
                                               ("2099-01-01", "NoRegisteredProviderFound")])
def test_arm_refuses_missing_or_unknown_api_versions(sandbox_env: Sandbox, version: str | None, code: str) -> None:
    response = requests.get(_account_url(sandbox_env, version), headers=_arm_token(sandbox_env), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_arm_accepts_the_spec_api_versions(sandbox_env: Sandbox) -> None:
    for version in ("2026-09-01", "2025-06-01"):
        response = requests.get(_account_url(sandbox_env, version), headers=_arm_token(sandbox_env), timeout=10)
        assert response.status_code == 200, version


def test_arm_refuses_a_principal_without_a_management_role(sandbox_env: Sandbox) -> None:
    with pytest.raises(HttpResponseError) as info:
        mgmt(sandbox_env, SandboxCredential("intruder")).storage_accounts.get_properties(
            sandbox_env.resource_group, sandbox_env.storage_account)
    assert info.value.status_code == 403
    assert info.value.error.code == "AuthorizationFailed"


def test_arm_refuses_the_ci_identity_once_contributor_is_removed(sandbox_env: Sandbox) -> None:
    sandbox_env.control.remove_role("ci-pipeline", "Contributor")
    with pytest.raises(HttpResponseError) as info:
        patch_rules(sandbox_env, mgmt(sandbox_env), ["20.1.1.1"])
    assert info.value.error.code == "AuthorizationFailed"


def test_metadata_endpoint_describes_the_sandbox_as_a_cloud(sandbox_env: Sandbox) -> None:
    clouds = requests.get(f"{sandbox_env.arm_endpoint}/metadata/endpoints?api-version=2022-09-01", timeout=10).json()
    assert clouds[0]["resourceManager"] == sandbox_env.arm_endpoint + "/"
    assert {"loginEndpoint", "audiences"} <= set(clouds[0]["authentication"])
    assert "storage" in clouds[0]["suffixes"]


# -- identity -----------------------------------------------------------------------------------------------
def test_managed_identity_credential_gets_a_token_for_the_ci_identity(sandbox_env: Sandbox) -> None:
    token = ManagedIdentityCredential().get_token("https://storage.azure.com/.default")
    claims = decode_token(token.token)
    assert claims["name"] == "ci-pipeline"
    assert claims["aud"] == "https://storage.azure.com"
    assert token.expires_on > time.time() + 600


def test_identity_endpoint_refuses_a_wrong_identity_header(sandbox_env: Sandbox) -> None:
    response = requests.get(sandbox_env.identity_endpoint, headers={"X-IDENTITY-HEADER": "wrong"},
                            params={"api-version": "2019-08-01", "resource": "https://storage.azure.com"}, timeout=10)
    assert response.status_code == 401
    assert "access_token" not in response.json()


# -- blob front: firewall -----------------------------------------------------------------------------------
def test_firewall_denies_until_the_new_rule_has_propagated(sandbox_env: Sandbox) -> None:
    service = blobs(sandbox_env.blob_endpoint)
    sandbox_env.control.set_propagation_delay(60)
    assert error_code(lambda: list(service.list_containers())) == "AuthorizationFailure"
    patch_rules(sandbox_env, mgmt(sandbox_env), [sandbox_env.origin().ip])
    assert error_code(lambda: list(service.list_containers())) == "AuthorizationFailure"  # not in effect yet
    sandbox_env.control.set_propagation_delay(0.3)
    assert wait_until(lambda: reachable(service))


def test_firewall_denial_has_azures_status_header_and_message(sandbox_env: Sandbox) -> None:
    response = requests.get(f"{sandbox_env.blob_endpoint}?comp=list", timeout=10)
    assert response.status_code == 403
    assert response.headers["x-ms-error-code"] == "AuthorizationFailure"
    assert "<Code>AuthorizationFailure</Code>" in response.text
    assert "<Message>This request is not authorized to perform this operation.\nRequestId:" in response.text


def test_a_removed_and_re_added_rule_waits_for_propagation_again(sandbox_env: Sandbox) -> None:
    open_agent(sandbox_env)
    service = blobs(sandbox_env.blob_endpoint)
    assert reachable(service)
    client = mgmt(sandbox_env)
    patch_rules(sandbox_env, client, [])
    sandbox_env.control.set_propagation_delay(60)
    patch_rules(sandbox_env, client, [sandbox_env.origin().ip])
    assert not reachable(service)


def test_a_cidr_rule_admits_the_origin_ip(sandbox_env: Sandbox) -> None:
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": "52.151.0.0/16"}]})
    assert reachable(blobs(sandbox_env.blob_endpoint))


def test_each_origin_is_judged_by_its_own_ip_and_echoes_it(sandbox_env: Sandbox) -> None:
    worker = sandbox_env.control.add_origin("20.30.40.50")
    worker_origin = next(o for o in sandbox_env.control.origins() if o.ip == "20.30.40.50")
    assert [requests.get(u, timeout=10).text.strip() for u in worker_origin.echo_urls] == ["20.30.40.50"] * 2
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": "20.30.40.50"}]})
    assert reachable(blobs(worker))
    assert not reachable(blobs(sandbox_env.blob_endpoint))


def test_eight_concurrent_workers_are_admitted_by_their_own_rules_only(sandbox_env: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ips = [f"20.40.0.{i}" for i in range(1, 9)]
    endpoints = [sandbox_env.control.add_origin(ip) for ip in ips]
    sandbox_env.control.set_account_properties(network_acls={"ipRules": [{"value": ip} for ip in ips[:4]]})
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda endpoint: reachable(blobs(endpoint)), endpoints))
    assert verdicts == [True] * 4 + [False] * 4


def test_the_agent_echo_urls_return_the_agent_ip(sandbox_env: Sandbox) -> None:
    answers = {requests.get(u, timeout=10).text.strip() for u in sandbox_env.echo_urls}
    assert answers == {sandbox_env.origin().ip}


def test_the_private_endpoint_origin_passes_the_firewall_without_rules(
    sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = blobs(sandbox_env.private_blob_endpoint)
    ci.get_container_client(CONTAINER).upload_blob("latest.json", b'{"version": "7"}')
    # The factory's managed identity, through its own identity endpoint.
    monkeypatch.setenv("IDENTITY_ENDPOINT", sandbox_env.identity_endpoint_for("adf-factory"))
    factory = blobs(sandbox_env.private_blob_endpoint, ManagedIdentityCredential())
    data = factory.get_blob_client(CONTAINER, "latest.json").download_blob().readall()
    assert data == b'{"version": "7"}'
    assert not reachable(blobs(sandbox_env.blob_endpoint))


def test_public_network_access_disabled_denies_public_origins_only(sandbox_env: Sandbox) -> None:
    sandbox_env.control.set_account_properties(network_acls={"defaultAction": "Allow"},
                                               public_network_access="Disabled")
    assert error_code(lambda: list(blobs(sandbox_env.blob_endpoint).list_containers())) == "AuthorizationFailure"
    assert isinstance(list(blobs(sandbox_env.private_blob_endpoint).list_containers()), list)


# -- blob front: RBAC and shared key ---------------------------------------------------------------------------
def test_removing_the_data_role_answers_authorization_permission_mismatch(sandbox_env: Sandbox) -> None:
    open_agent(sandbox_env)
    service = blobs(sandbox_env.blob_endpoint)
    assert reachable(service)
    sandbox_env.control.remove_role("ci-pipeline", "Storage Blob Data Contributor")
    assert error_code(lambda: list(service.list_containers())) == "AuthorizationPermissionMismatch"


def test_a_reader_can_read_but_not_write(sandbox_env: Sandbox) -> None:
    blobs(sandbox_env.private_blob_endpoint).get_container_client(CONTAINER).upload_blob("a.json", b"{}")
    reader = blobs(sandbox_env.private_blob_endpoint, SandboxCredential("adf-factory"))
    assert reader.get_blob_client(CONTAINER, "a.json").download_blob().readall() == b"{}"
    code = error_code(lambda: reader.get_blob_client(CONTAINER, "b.json").upload_blob(b"{}"))
    assert code == "AuthorizationPermissionMismatch"


def test_shared_key_is_refused_while_disabled_and_accepted_when_enabled(sandbox_env: Sandbox) -> None:
    key = sandbox_env.control.account()["sandbox"]["accountKey"]
    credential = {"account_name": sandbox_env.storage_account, "account_key": key}
    service = BlobServiceClient(sandbox_env.private_blob_endpoint, credential=credential)
    assert error_code(lambda: list(service.list_containers())) == "KeyBasedAuthenticationNotPermitted"
    sandbox_env.control.set_account_properties(allow_shared_key_access=True)
    assert isinstance(list(service.list_containers()), list)


def test_the_blob_front_streams_large_bodies_and_range_reads(sandbox_env: Sandbox) -> None:
    container = blobs(sandbox_env.private_blob_endpoint).get_container_client(CONTAINER)
    payload = bytes(range(256)) * 40_000  # ~10 MB: several blocks, chunked uploads
    container.upload_blob("big.bin", payload, max_concurrency=4)
    blob = container.get_blob_client("big.bin")
    assert blob.get_blob_properties().size == len(payload)
    assert blob.download_blob(offset=1000, length=300).readall() == payload[1000:1300]
    assert blob.download_blob(max_concurrency=3).readall() == payload


# -- faults ---------------------------------------------------------------------------------------------------
def test_arm_throttling_is_retried_after_retry_after(sandbox_env: Sandbox) -> None:
    fault = sandbox_env.control.add_fault(service="arm", path="storageAccounts", status=429, retry_after=1,
                                          count=1)
    account = mgmt(sandbox_env).storage_accounts.get_properties(sandbox_env.resource_group,
                                                                sandbox_env.storage_account)
    assert account.name == sandbox_env.storage_account
    spent = next(f for f in sandbox_env.control.faults() if f.id == fault.id)
    assert (spent.hits, spent.remaining) == (1, 0)
    statuses = [r["status"] for r in sandbox_env.control.requests("arm") if "storageAccounts" in r["path"]]
    assert statuses == [429, 200]


def test_blob_server_busy_is_retried_by_the_storage_sdk(sandbox_env: Sandbox) -> None:
    open_agent(sandbox_env)
    sandbox_env.control.add_fault(service="blob", path="comp=list", status=503, retry_after=0, count=2)
    assert reachable(blobs(sandbox_env.blob_endpoint))
    assert [f.hits for f in sandbox_env.control.faults()] == [2]


def test_a_dropped_connection_is_retried(sandbox_env: Sandbox) -> None:
    open_agent(sandbox_env)
    sandbox_env.control.add_fault(service="blob", path="comp=list", kind="drop", count=1)
    assert reachable(blobs(sandbox_env.blob_endpoint))
    assert [f.hits for f in sandbox_env.control.faults()] == [1]


def test_a_dropped_connection_surfaces_as_a_connection_error_without_retries(sandbox_env: Sandbox) -> None:
    open_agent(sandbox_env)
    sandbox_env.control.add_fault(service="blob", path="comp=list", kind="drop", count=None)
    service = blobs(sandbox_env.blob_endpoint, retry_policy=LinearRetry(retry_total=0))
    with pytest.raises(AzureError) as info:
        list(service.list_containers())
    assert isinstance(info.value, ServiceRequestError | ServiceResponseError)


def test_a_delay_fault_outlasts_a_short_read_timeout(sandbox_env: Sandbox) -> None:
    sandbox_env.control.add_fault(service="arm", path="storageAccounts", kind="delay", delay=2.0, count=None)
    client = StorageManagementClient(ManagedIdentityCredential(), sandbox_env.subscription_id,
                                     base_url=sandbox_env.arm_endpoint, retry_total=0,
                                     credential_scopes=[sandbox_env.arm_endpoint + "/.default"])
    with pytest.raises(ServiceResponseError):
        client.storage_accounts.get_properties(sandbox_env.resource_group, sandbox_env.storage_account,
                                               read_timeout=0.3)


# -- control ----------------------------------------------------------------------------------------------------
def test_reset_restores_the_preprovisioned_cloud(sandbox: Sandbox) -> None:
    control = sandbox.control
    control.set_account_properties(network_acls={"defaultAction": "Allow"}, tags={"x": "y"})
    control.remove_role("ci-pipeline", "Contributor")
    control.add_fault(service="arm", path=".*", count=None)
    control.add_origin("20.7.7.7")
    control.reset()
    account = control.account()
    assert account["properties"]["networkAcls"]["defaultAction"] == "Deny"
    assert account["tags"] == {}
    assert control.faults() == []
    assert any(a["role"] == "Contributor" and a["principal"] == "ci-pipeline" for a in control.role_assignments())
    assert {o.name for o in control.origins()} == {"agent", "private-endpoint", "adf-public"}
