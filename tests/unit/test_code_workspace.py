"""Plain-REST workspace lookups: the exact requests the SDK makes, and classified failures."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from azure.core.credentials import AccessToken

from cicd_tools.codeassets.workspace import (
    CODE_API_VERSION,
    CodeVersionInfo,
    WorkspaceCodes,
    WorkspaceRef,
    discover_cloud_metadata,
)
from cicd_tools.support.errors import PermissionMissing, UsageError

ARM = "https://arm.example.test"
WS = WorkspaceRef("sub-1", "rg-1", "ws-1", ARM)
SHA = "c" * 64


class StaticCredential:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("token-123", int(time.time()) + 3600)


def version_doc(name: str, version: str, sha: str | None = SHA) -> dict[str, Any]:
    inner = {"hash_sha256": sha, "hash_version": "202208"} if sha else {}
    return {"id": WS.code_version_id(name, version), "name": version,
            "properties": {"codeUri": f"https://acct/c/{version}", "properties": inner},
            "systemData": {"createdAt": "2026-01-01T00:00:00Z"}}


@responses.activate
def test_hash_lookup_sends_the_sdks_query_with_a_bearer_token() -> None:
    url = f"{ARM}{WS.path}/codes/train/versions"
    responses.get(url, json={"value": [version_doc("train", "7")]})
    cred = StaticCredential()
    with WorkspaceCodes(WS, cred) as codes:  # type: ignore[arg-type]
        found = codes.find_by_hash("train", SHA)
    assert [f.version for f in found] == ["7"]
    sent = responses.calls[0].request
    assert parse_qs(urlsplit(sent.url).query) == {
        "api-version": [CODE_API_VERSION], "hash": [SHA], "hashVersion": ["202208"]}
    assert sent.headers["Authorization"] == "Bearer token-123"
    assert cred.scopes == [(f"{ARM}/.default",)]


@responses.activate
def test_a_hash_hit_of_another_name_keeps_that_name_as_the_sdk_reads_it() -> None:
    # The filter matches "regardless of name" (CodeVersions_List); name and version come from the hit's ARM id.
    responses.get(f"{ARM}{WS.path}/codes/validation-code/versions", json={"value": [version_doc("training-code", "5")]})
    with WorkspaceCodes(WS, StaticCredential()) as codes:  # type: ignore[arg-type]
        (hit,) = codes.find_by_hash("validation-code", SHA)
    assert (hit.name, hit.version, hit.id) == ("training-code", "5", WS.code_version_id("training-code", "5"))


@responses.activate
def test_hash_lookup_follows_next_link() -> None:
    url = f"{ARM}{WS.path}/codes/train/versions"
    responses.get(url, json={"value": [version_doc("train", "9")], "nextLink": f"{url}?page=2"},
                  match=[responses.matchers.query_param_matcher(
                      {"api-version": CODE_API_VERSION, "hash": SHA, "hashVersion": "202208"})])
    responses.get(url, json={"value": [version_doc("train", "3")]},
                  match=[responses.matchers.query_param_matcher({"page": "2"})])
    with WorkspaceCodes(WS, StaticCredential()) as codes:  # type: ignore[arg-type]
        assert [f.version for f in codes.find_by_hash("train", SHA)] == ["9", "3"]


@responses.activate
def test_a_missing_version_is_none_and_an_existing_one_is_parsed() -> None:
    base = f"{ARM}{WS.path}/codes/train/versions"
    responses.get(f"{base}/1", json=version_doc("train", "1"))
    responses.get(f"{base}/2", status=404, json={"error": {"code": "UserError", "message": "not found"}})
    with WorkspaceCodes(WS, StaticCredential()) as codes:  # type: ignore[arg-type]
        assert codes.get_version("train", "1") == CodeVersionInfo(
            id=WS.code_version_id("train", "1"), name="train", version="1", code_uri="https://acct/c/1",
            hash_sha256=SHA, hash_version="202208", created_at="2026-01-01T00:00:00Z")
        assert codes.get_version("train", "2") is None
        assert codes.version_exists("train", "1") and not codes.version_exists("train", "2")


@responses.activate
def test_a_missing_workspace_role_is_a_permission_error_with_the_fix() -> None:
    responses.get(f"{ARM}{WS.path}/codes/train/versions", status=403, json={"error": {
        "code": "AuthorizationFailed", "message": "The client 'x' does not have authorization"}})
    with WorkspaceCodes(WS, StaticCredential()) as codes, pytest.raises(PermissionMissing) as err:  # type: ignore[arg-type]
        codes.find_by_hash("train", SHA)
    assert err.value.code == "AuthorizationFailed"
    assert "AzureML Data Scientist" in err.value.hint


def test_an_http_arm_endpoint_is_refused_before_any_token_is_sent() -> None:
    cred = StaticCredential()
    with pytest.raises(UsageError, match="https"):
        WorkspaceCodes(WorkspaceRef("s", "r", "w", "http://127.0.0.1:1"), cred)  # type: ignore[arg-type]
    assert cred.scopes == []


@responses.activate
def test_cloud_metadata_is_read_from_the_endpoint_and_has_the_six_keys() -> None:
    responses.get(f"{ARM}/metadata/endpoints", json=[{
        "name": "X", "portal": "https://portal.x", "resourceManager": f"{ARM}/",
        "authentication": {"loginEndpoint": "https://login.x/"}, "suffixes": {"storage": "store.x"}}])
    meta = discover_cloud_metadata(ARM)
    assert meta == {
        "azure_portal": "https://portal.x", "resource_manager": f"{ARM}/", "active_directory": "https://login.x/",
        "aml_resource_id": f"{ARM}/", "storage_endpoint": "store.x", "registry_discovery_endpoint": f"{ARM}/"}


@responses.activate
def test_cloud_metadata_falls_back_to_the_arm_endpoint_when_unreadable() -> None:
    responses.get(f"{ARM}/metadata/endpoints", status=404)
    meta = discover_cloud_metadata(ARM)
    assert meta["resource_manager"] == f"{ARM}/"
    assert len(meta) == 6
