"""The sandbox's Azure ML code-version endpoints answer like the service azure-ai-ml talks to (no network)."""

from __future__ import annotations

import json
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cicd_tools.sandbox import control
from cicd_tools.sandbox.identity.identity import mint_token, signing_key
from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.ml import workspace as aml
from cicd_tools.sandbox.server import HttpError, Request, Response, Router
from cicd_tools.sandbox.state import CloudState

ARM = "https://127.0.0.1:4443"
H1 = "a" * 64
H2 = "b" * 64
SECRET = "unit-test-sandbox-secret"
KEY = signing_key(SECRET)


class FakeHub:
    """The parts of the sandbox Hub the AML routes use."""

    signing_key = KEY

    def __init__(self) -> None:
        self.layout = SandboxLayout()
        self.state = CloudState(self.layout, propagation_delay=0)
        self.created: list[tuple[str, str]] = []

    @property
    def arm_endpoint(self) -> str:
        return ARM

    def blob_endpoint_of(self, account: str, origin: str = "agent") -> str:
        return f"https://127.0.0.1:5555/{account}"

    def account_key(self, account: str) -> str:
        from cicd_tools.sandbox.layout import account_key

        return account_key(account, SECRET)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(aml, "_create_container", lambda h, account, container: fake.created.append(
        (account, container)))
    return fake


@pytest.fixture
def router() -> Router:
    r = Router()
    r.include(aml.routes)
    r.include(control.routes)
    return r


def ws_path(hub: FakeHub) -> str:
    lay = hub.layout
    return (f"/subscriptions/{lay.subscription_id}/resourceGroups/{lay.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{lay.workspace}")


def call(
    router: Router, hub: FakeHub, method: str, path: str, *, query: dict[str, str] | None = None,
    body: Any = None, principal: str | None = "ci-pipeline",
) -> tuple[int, Any]:
    headers = Message()
    if principal is not None:
        headers["Authorization"] = f"Bearer {mint_token(principal, ARM, key=KEY)}"
    params = [("api-version", "2023-04-01"), *(query or {}).items()]
    route, groups, _ = router.resolve(method, path)
    assert route is not None, f"no route for {method} {path}"
    req = Request(method, path, params, headers, json.dumps(body).encode() if body is not None else b"",
                  "127.0.0.1", groups)
    try:
        response: Response = route.handler(req, hub)  # type: ignore[arg-type]
    except HttpError as err:
        response = err.response
    return response.status, json.loads(response.body) if response.body else None


def put_body(uri: str, sha: str | None, hash_version: object = 202208) -> dict[str, Any]:
    props: dict[str, Any] = {} if sha is None else {"hash_sha256": sha, "hash_version": hash_version}
    return {"properties": {"codeUri": uri, "isAnonymous": False, "properties": props}}


def test_hash_lookup_of_an_unknown_name_is_an_empty_list_not_a_404(hub: FakeHub, router: Router) -> None:
    status, body = call(router, hub, "GET", ws_path(hub) + "/codes/never-registered/versions",
                        query={"hash": H1, "hashVersion": "202208"})
    assert (status, body) == (200, {"value": []})


def test_missing_version_is_a_404_user_error(hub: FakeHub, router: Router) -> None:
    status, body = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions/7")
    assert status == 404
    assert body["error"]["code"] == "UserError"


def test_put_creates_then_the_hash_lookup_returns_that_version(hub: FakeHub, router: Router) -> None:
    path = ws_path(hub) + "/codes/train/versions/1"
    status, created = call(router, hub, "PUT", path, body=put_body("https://x/c1/src", H1))
    assert status == 201
    assert created["id"] == path
    assert created["properties"]["properties"] == {"hash_sha256": H1, "hash_version": "202208"}
    assert created["systemData"]["createdBy"] == "ci-pipeline"
    _, hit = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions",
                  query={"hash": H1, "hashVersion": "202208"})
    assert [v["id"] for v in hit["value"]] == [path]
    _, miss = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions",
                   query={"hash": H2, "hashVersion": "202208"})
    assert miss == {"value": []}


def test_hash_lookup_matches_regardless_of_name_as_the_rest_spec_documents(hub: FakeHub, router: Router) -> None:
    # CodeVersions_List, `hash`: "return CodeVersion assets with specified content hash value, regardless of name".
    call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1", body=put_body("https://x/c1/src", H1))
    _, other = call(router, hub, "GET", ws_path(hub) + "/codes/validate/versions",
                    query={"hash": H1, "hashVersion": "202208"})
    assert [v["id"] for v in other["value"]] == [ws_path(hub) + "/codes/train/versions/1"]
    _, plain = call(router, hub, "GET", ws_path(hub) + "/codes/validate/versions")
    assert plain == {"value": []}  # without the hash filter the list stays the name's own versions


def test_the_control_switch_scopes_the_hash_lookup_to_the_name_until_reset(hub: FakeHub, router: Router) -> None:
    call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1", body=put_body("https://x/c1/src", H1))
    assert call(router, hub, "PUT", "/_sandbox/machinelearning/code-hash-scope", body={"scope": "name"},
                principal=None) == (200, {"scope": "name"})
    _, other = call(router, hub, "GET", ws_path(hub) + "/codes/validate/versions",
                    query={"hash": H1, "hashVersion": "202208"})
    assert other == {"value": []}
    _, own = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions", query={"hash": H1})
    assert [v["name"] for v in own["value"]] == ["1"]
    status, body = call(router, hub, "PUT", "/_sandbox/machinelearning/code-hash-scope", body={"scope": "any"},
                        principal=None)
    assert status == 400 and "scope must be one of" in body["error"]["message"]
    aml.reset_aml_state(hub)  # type: ignore[arg-type]
    assert call(router, hub, "GET", "/_sandbox/machinelearning/code-hash-scope", principal=None) == (
        200, {"scope": "workspace"})


def test_same_content_put_again_is_idempotent(hub: FakeHub, router: Router) -> None:
    path = ws_path(hub) + "/codes/train/versions/1"
    call(router, hub, "PUT", path, body=put_body("https://x/c1/src", H1))
    status, again = call(router, hub, "PUT", path, body=put_body("https://x/c2/src", H1, "202208"))
    assert status == 200
    assert again["properties"]["codeUri"] == "https://x/c1/src"


def test_other_content_under_an_existing_version_is_refused_like_the_service(hub: FakeHub, router: Router) -> None:
    path = ws_path(hub) + "/codes/train/versions/1"
    call(router, hub, "PUT", path, body=put_body("https://x/c1/src", H1))
    status, body = call(router, hub, "PUT", path, body=put_body("https://x/c2/src", H2))
    assert status == 400
    assert body["error"]["code"] == "UserError"
    assert body["error"]["message"] == "Asset paths cannot be updated."


def test_newest_version_comes_first_and_pages_follow_next_link(hub: FakeHub, router: Router) -> None:
    for n in range(1, 4):
        call(router, hub, "PUT", ws_path(hub) + f"/codes/train/versions/{n}", body=put_body(f"https://x/{n}", H1))
    _, first = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions", query={"$top": "2"})
    assert [v["name"] for v in first["value"]] == ["3", "2"]
    token = parse_qs(urlsplit(first["nextLink"]).query)["$skipToken"][0]
    _, second = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions",
                     query={"$top": "2", "$skipToken": token})
    assert [v["name"] for v in second["value"]] == ["1"]
    assert "nextLink" not in second


def test_pending_upload_hands_out_a_container_sas_on_the_workspace_storage(hub: FakeHub, router: Router) -> None:
    status, body = call(router, hub, "POST", ws_path(hub) + "/codes/train/versions/1/startPendingUpload",
                        body={"pendingUploadType": "TemporaryBlobReference"})
    assert status == 200
    ref = body["blobReferenceForConsumption"]
    account = hub.layout.workspace_storage_account
    container = ref["blobUri"].rsplit("/", 1)[1]
    assert hub.created == [(account, container)]
    assert ref["blobUri"] == f"https://127.0.0.1:5555/{account}/{container}"
    assert ref["credential"]["credentialType"] == "SAS"
    sas = parse_qs(urlsplit(ref["credential"]["sasUri"]).query)
    assert sas["sr"] == ["c"] and "sig" in sas and set(sas["sp"][0]) >= set("racwl")
    assert ref["storageAccountArmId"].endswith(f"/storageAccounts/{account}")


def test_every_pending_upload_gets_its_own_container(hub: FakeHub, router: Router) -> None:
    path = ws_path(hub) + "/codes/train/versions/1/startPendingUpload"
    call(router, hub, "POST", path, body={})
    call(router, hub, "POST", path, body={})
    assert len({c for _, c in hub.created}) == 2


def test_a_request_without_a_token_is_refused_with_401(hub: FakeHub, router: Router) -> None:
    status, body = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions", principal=None)
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"


def test_a_principal_without_a_workspace_role_is_refused_with_403(hub: FakeHub, router: Router) -> None:
    status, body = call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1",
                        body=put_body("https://x/1", H1), principal="someone-else")
    assert status == 403
    assert body["error"]["code"] == "AuthorizationFailed"
    hub.state.assign_role("someone-else", "AzureML Data Scientist", ws_path(hub))
    status, _ = call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1",
                     body=put_body("https://x/1", H1), principal="someone-else")
    assert status == 201


def test_a_reader_may_look_up_but_not_register(hub: FakeHub, router: Router) -> None:
    hub.state.assign_role("auditor", "Reader", ws_path(hub))
    status, _ = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions", principal="auditor")
    assert status == 200
    status, _ = call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1",
                     body=put_body("https://x/1", H1), principal="auditor")
    assert status == 403


def test_an_unknown_workspace_is_an_arm_404(hub: FakeHub, router: Router) -> None:
    path = ws_path(hub).replace(hub.layout.workspace, "other-ws") + "/codes/train/versions"
    status, body = call(router, hub, "GET", path)
    assert status == 404
    assert body["error"]["code"] == "ResourceNotFound"


def test_reset_forgets_every_code_version(hub: FakeHub, router: Router) -> None:
    call(router, hub, "PUT", ws_path(hub) + "/codes/train/versions/1", body=put_body("https://x/1", H1))
    aml.reset_aml_state(hub)  # type: ignore[arg-type]
    status, _ = call(router, hub, "GET", ws_path(hub) + "/codes/train/versions/1")
    assert status == 404
