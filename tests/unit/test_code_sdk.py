"""The azure.ai.ml boundary against the installed SDK (run on the newest and the oldest by the SDK matrix)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import responses
from azure.core.credentials import AccessToken

from cicd_tools.codeassets import sdk
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.support.errors import AzureError, EnvironmentProblem, NetworkDenied, PermissionMissing

ARM = "https://arm.sdk-test.example"
BLOB = "https://wsstore.blob.sdk-test.example"
WS = WorkspaceRef("00000000-0000-0000-0000-0000000000aa", "rg", "ws", ARM)


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)


def code_doc(name: str, version: str, sha: str, uri: str) -> dict[str, Any]:
    return {
        "id": WS.code_version_id(name, version), "name": version,
        "type": "Microsoft.MachineLearningServices/workspaces/codes/versions",
        "properties": {"codeUri": uri, "isAnonymous": False,
                       "properties": {"hash_sha256": sha, "hash_version": "202208"}},
        "systemData": {"createdAt": "2026-01-01T00:00:00Z", "createdBy": "ci", "createdByType": "Application",
                       "lastModifiedAt": "2026-01-01T00:00:00Z", "lastModifiedBy": "ci",
                       "lastModifiedByType": "Application"},
    }


class FakeWorkspace:
    """Just enough of the workspace + its storage for MLClient._code.create_or_update, over ``responses``."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.versions: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        codes = re.compile(re.escape(f"{ARM}{WS.path}/codes/") + r".*")
        rsps.add(responses.GET, f"{ARM}/metadata/endpoints", status=404)
        # Without a JSON content type azure-ai-ml 1.24 (msrest) cannot deserialize the body.
        for method, callback in ((responses.GET, self.get), (responses.POST, self.pending), (responses.PUT, self.put)):
            rsps.add_callback(method, codes, callback, content_type="application/json")
        blob = re.compile(re.escape(BLOB) + r".*")
        for method in (responses.HEAD, responses.PUT):
            rsps.add_callback(method, blob, self.blob)

    def _name_version(self, url: str) -> tuple[str, str | None]:
        match = re.search(r"/codes/([^/?]+)/versions(?:/([^/?]+))?", url)
        assert match
        return match[1], match[2]

    def get(self, request: Any) -> tuple[int, dict[str, str], str]:
        name, version = self._name_version(request.url)
        if version is None:
            self.calls.append("list")
            sha = re.search(r"hash=([0-9a-f]+)", request.url)
            # The hash filter matches "regardless of name" (CodeVersions_List in the REST spec).
            hits = [d for d in self.versions.values()
                    if sha and d["properties"]["properties"]["hash_sha256"] == sha[1]]
            return 200, {}, json.dumps({"value": hits})
        self.calls.append("get")
        doc = self.versions.get((name, version))
        if doc is None:
            return 404, {}, json.dumps({"error": {"code": "UserError", "message": "not found"}})
        return 200, {}, json.dumps(doc)

    def pending(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.calls.append("startPendingUpload")
        return 200, {}, json.dumps({"blobReferenceForConsumption": {
            "blobUri": f"{BLOB}/c1", "credential": {"credentialType": "SAS", "sasUri": f"{BLOB}/c1?sv=1&sig=x"}},
            "pendingUploadType": "TemporaryBlobReference"})

    def put(self, request: Any) -> tuple[int, dict[str, str], str]:
        name, version = self._name_version(request.url)
        assert version is not None
        self.calls.append("put")
        props = json.loads(request.body)["properties"]
        sha = props["properties"]["hash_sha256"]
        existing = self.versions.get((name, version))
        if existing and existing["properties"]["properties"]["hash_sha256"] != sha:
            return 400, {}, json.dumps({"error": {"code": "UserError", "message": "Asset paths cannot be updated."}})
        self.versions[(name, version)] = code_doc(name, version, sha, props["codeUri"])
        return 201, {}, json.dumps(self.versions[(name, version)])

    def blob(self, request: Any) -> tuple[int, dict[str, str], str]:
        headers = {"ETag": '"0x1"', "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
                   "x-ms-request-server-encrypted": "true"}
        if request.method == "HEAD":
            self.calls.append("blob HEAD")
            return 404, {"x-ms-error-code": "BlobNotFound"}, ""
        self.calls.append("blob metadata" if "comp=metadata" in request.url else "blob PUT")
        return (200 if "comp=metadata" in request.url else 201), headers, ""


@pytest.fixture
def workspace() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeWorkspace(rsps)


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    return folder


def test_the_sdk_code_class_loads_on_this_sdk_version(tmp_path: Path) -> None:
    # a folder of its own: hashing the checkout raced with git's index.lock when another worker ran git
    (tmp_path / "train.py").write_text("print('x')\n")
    code = sdk.load_code_class()(name="n", version="1", path=str(tmp_path))
    assert (code.name, code.version) == ("n", "1")


def test_sdk_request_sequence_on_a_miss_then_a_hit(workspace: FakeWorkspace, code_dir: Path) -> None:
    client = sdk.build_ml_client(StaticCredential(), WS)  # type: ignore[arg-type]
    first = sdk.create_code(client, "train", "1", code_dir)
    assert workspace.calls == ["list", "startPendingUpload", "blob HEAD", "blob PUT", "blob metadata", "put"]
    assert (first.version, first.id) == ("1", WS.code_version_id("train", "1"))
    assert first.path == f"{BLOB}/c1/src"
    workspace.calls.clear()
    second = sdk.create_code(client, "train", "2", code_dir)
    assert workspace.calls == ["list", "get"]  # dedup: the existing version comes back, nothing uploaded
    assert second.version == "1"
    assert second.hash_sha256 == first.hash_sha256


def test_the_sdk_returns_another_names_asset_when_the_hash_lookup_crosses_names(
    workspace: FakeWorkspace, code_dir: Path
) -> None:
    # azure-ai-ml reads name AND version of the first hash hit from its ARM id (_get_existing_asset_name_and_version).
    client = sdk.build_ml_client(StaticCredential(), WS)  # type: ignore[arg-type]
    sdk.create_code(client, "training-code", "1", code_dir)
    workspace.calls.clear()
    returned = sdk.create_code(client, "validation-code", "2", code_dir)
    assert workspace.calls == ["list", "get"]
    assert (returned.name, returned.version) == ("training-code", "1")
    assert returned.id == WS.code_version_id("training-code", "1")


def test_other_content_under_an_existing_version_is_a_version_conflict(
    workspace: FakeWorkspace, code_dir: Path
) -> None:
    client = sdk.build_ml_client(StaticCredential(), WS)  # type: ignore[arg-type]
    sdk.create_code(client, "train", "1", code_dir)
    (code_dir / "train.py").write_text("print('changed')\n")
    with pytest.raises(sdk.VersionConflict) as err:
        sdk.create_code(client, "train", "1", code_dir)
    assert err.value.exit_code == 5
    assert err.value.code == "VersionExistsWithOtherContent"


def test_a_client_without_code_operations_names_the_installed_sdk_version() -> None:
    with pytest.raises(EnvironmentProblem) as err:
        sdk.require_code_operations(object())
    assert f"azure-ai-ml {sdk.installed_sdk_version()}" in err.value.message
    assert err.value.exit_code == 2


def test_a_cloud_name_per_endpoint_so_two_sandboxes_do_not_share_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk, "discover_cloud_metadata", lambda arm: {"resource_manager": arm + "/"})
    one, two = sdk.cloud_kwargs("https://127.0.0.1:1001"), sdk.cloud_kwargs("https://127.0.0.1:1002")
    assert one["cloud"] != two["cloud"]
    assert sdk.cloud_kwargs("https://management.azure.com/") == {}


def _http_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Exception:
    from azure.core.exceptions import HttpResponseError
    from azure.core.pipeline.transport import RequestsTransportResponse
    from azure.core.rest import HttpRequest
    from azure.mgmt.core.exceptions import ARMErrorFormat
    from requests import Response

    raw = Response()
    raw.status_code = status
    raw._content = json.dumps(body).encode()
    raw.headers.update({"Content-Type": "application/json", **(headers or {})})
    response = RequestsTransportResponse(HttpRequest("PUT", "https://x"), raw)
    return HttpResponseError(response=response, error_format=ARMErrorFormat)


def test_the_raw_asset_path_error_is_translated_to_a_version_conflict() -> None:
    raw = _http_error(400, {"error": {"code": "UserError", "message": "Asset paths cannot be updated."}})
    translated = sdk.translate_sdk_error(raw, name="train", version="5")
    assert isinstance(translated, sdk.VersionConflict)
    assert "train:5 already exists" in translated.message


def test_a_firewall_refusal_during_upload_is_network_denied() -> None:
    raw = _http_error(403, {"error": {"code": "AuthorizationFailure", "message": "not authorized"}},
                      {"x-ms-error-code": "AuthorizationFailure"})
    assert isinstance(sdk.translate_sdk_error(raw, name="t", version="1"), NetworkDenied)


def test_a_storage_error_code_enum_is_classified_by_its_value() -> None:
    from azure.storage.blob import StorageErrorCode

    raw = _http_error(403, {}, {"x-ms-error-code": "AuthorizationFailure"})
    raw.error_code = StorageErrorCode.AUTHORIZATION_FAILURE  # type: ignore[attr-defined]  # what blob HEAD sets
    translated = sdk.translate_sdk_error(raw, name="t", version="1")
    assert isinstance(translated, NetworkDenied)
    assert translated.code == "AuthorizationFailure"


def test_a_missing_workspace_role_is_permission_missing() -> None:
    raw = _http_error(403, {"error": {"code": "AuthorizationFailed", "message": "no authorization"}})
    assert isinstance(sdk.translate_sdk_error(raw, name="t", version="1"), PermissionMissing)


def test_an_unknown_sdk_failure_keeps_its_type_and_the_sdk_version() -> None:
    translated = sdk.translate_sdk_error(RuntimeError("boom"), name="t", version="1")
    assert type(translated) is not AzureError or translated.code == "RuntimeError"
    assert "boom" in translated.message and sdk.installed_sdk_version() in translated.message
