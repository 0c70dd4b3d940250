"""Who may talk to the sandbox (issue 19.1): every control route needs the sandbox secret, every ARM route and
the blob front a token the sandbox signed for them; another OS user, who cannot read the 0600 sandbox.json,
gets 401/403 everywhere. The routes come from the router tables, not from a hand-made list."""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import os
import re
import ssl
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cicd_tools.sandbox import process
from cicd_tools.sandbox.identity.ci_oidc import github_oidc_token
from cicd_tools.sandbox.identity.entra import client_id_of
from cicd_tools.sandbox.identity.identity import (
    SANDBOX_TENANT,
    SECRET_ENV,
    STORAGE_AUDIENCE,
    decode_token,
    mint_token,
    signing_key,
)
from cicd_tools.sandbox.runtime import ROUTE_MODULES, Sandbox
from cicd_tools.sandbox.server import CONTROL_PREFIX, SECRET_HEADER, Route

NOBODY = 65534
OPEN_UP = json.dumps({"networkAcls": {"defaultAction": "Allow"}}).encode()  # issue 19's PATCH body, sent everywhere


# -- the routes, from the router tables ------------------------------------------------------------------
def all_routes() -> list[Route]:
    return [route for name in ROUTE_MODULES for route in importlib.import_module(name).routes]


def _samples(sb: Sandbox) -> dict[str, str]:
    lay = sb.layout
    return {"sub": lay.subscription_id, "rg": lay.resource_group, "scope": lay.resource_group_id,
            "account": lay.storage_account, "ws": lay.workspace, "factory": lay.factory, "cluster": lay.aks_cluster,
            "compute": lay.compute, "identity": lay.aks_identity, "guid": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "action": "start", "kind": "pipelines", "tenant": SANDBOX_TENANT, "principal": lay.ci_principal,
            "loc": lay.location}


def _group_end(pattern: str, start: int) -> int:
    """The index just past the group opening at ``start`` (parentheses counted, escapes skipped)."""
    depth, i = 0, start
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(pattern[i], 0)
        i += 1
        if depth == 0:
            return i
    raise ValueError(f"unbalanced pattern {pattern}")


def sample_path(pattern: str, samples: dict[str, str]) -> str:
    """A concrete path the route pattern matches: named groups filled, optional groups dropped."""
    out, i = "", 0
    while i < len(pattern):
        named = re.match(r"\(\?P<(\w+)>", pattern[i:])
        if named:
            out += samples.get(named[1], "sample1")
            i = _group_end(pattern, i)
        elif pattern.startswith("(?:", i):
            end = _group_end(pattern, i)
            i = end + 1 if pattern[end:end + 1] == "?" else end
        elif pattern[i] == "\\":
            out += pattern[i + 1]
            i += 2
        else:
            out += pattern[i]
            i += 1
    assert re.fullmatch(pattern, out, re.IGNORECASE), (pattern, out)
    return out


def control_routes() -> list[Route]:
    return [r for r in all_routes() if r.service == "control" or r.pattern.lower().startswith(CONTROL_PREFIX)]


def arm_routes() -> list[Route]:
    return [r for r in all_routes() if r.service == "arm" and not r.public]


def test_the_route_tables_hold_control_arm_and_identity_routes_and_every_pattern_has_a_sample(
    sandbox: Sandbox,
) -> None:
    routes = all_routes()
    assert len(control_routes()) >= 20 and len(arm_routes()) >= 50
    for route in routes:
        sample_path(route.pattern, _samples(sandbox))
    # Only the cloud metadata document and Azure ML's discovery document are served without a token, as Azure
    # serves them (azure-ai-ml GETs the workspace's discoveryUrl with a bare pipeline: _job_operations.py
    # _get_workspace_url, download_text_from_url).
    assert sorted(r.pattern for r in routes if r.public) == [r"/discovery", r"/metadata/endpoints"]


# -- forged and foreign tokens ------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none(token: str) -> str:
    """The same claims under ``alg: none`` and no signature (what issue 19 submitted a job with)."""
    claims = decode_token(token)
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def bad_tokens(sb: Sandbox, audience: str, other: str) -> dict[str, str]:
    good = mint_token("ci-pipeline", audience, key=sb.signing_key)
    return {
        "alg-none": alg_none(good),
        "other-key": mint_token("ci-pipeline", audience, key=signing_key("another sandbox's secret")),
        "wrong-audience": mint_token("ci-pipeline", other, key=sb.signing_key),
        "expired": mint_token("ci-pipeline", audience, key=sb.signing_key, lifetime=-600),
        "garbage": "not-a-jwt",
    }


@pytest.fixture
def session(sandbox: Sandbox) -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(sandbox.ca_bundle)
    yield s
    s.close()


def test_every_control_route_answers_401_without_the_secret_and_403_with_a_wrong_one(
    sandbox: Sandbox, session: requests.Session
) -> None:
    samples = _samples(sandbox)
    for route in control_routes():
        url = sandbox.arm_endpoint + sample_path(route.pattern, samples)
        missing = session.request(route.method, url, json={}, timeout=10)
        assert missing.status_code == 401, (route.method, url, missing.text)
        assert missing.json()["error"]["code"] == "SandboxSecretRequired"
        wrong = session.request(route.method, url, json={}, headers={SECRET_HEADER: "x" * 43}, timeout=10)
        assert wrong.status_code == 403, (route.method, url, wrong.text)
        assert wrong.json()["error"]["code"] == "SandboxSecretMismatch"
        assert "accountKey" not in missing.text + wrong.text
    # The same call with the secret works (the typed client sends it), and only then shows an account key.
    assert sandbox.control.account()["sandbox"]["accountKey"] == sandbox.account_key(sandbox.storage_account)


def test_an_unknown_control_path_needs_the_secret_too(sandbox: Sandbox, session: requests.Session) -> None:
    assert session.get(f"{sandbox.control_url}/no-such-switch", timeout=10).status_code == 401


def test_every_arm_route_refuses_no_token_and_forged_foreign_or_expired_tokens_with_401(
    sandbox: Sandbox, session: requests.Session
) -> None:
    samples = _samples(sandbox)
    tokens = bad_tokens(sandbox, sandbox.arm_endpoint, STORAGE_AUDIENCE)
    for route in arm_routes():
        url = sandbox.arm_endpoint + sample_path(route.pattern, samples) + "?api-version=2024-01-01"
        answer = session.request(route.method, url, json={}, timeout=10)
        assert answer.status_code == 401, (route.method, url, answer.text)
        assert answer.json()["error"]["code"] == "AuthenticationFailed"
        for kind, token in tokens.items():
            answer = session.request(route.method, url, json={}, headers={"Authorization": f"Bearer {token}"},
                                     timeout=10)
            assert answer.status_code == 401, (kind, route.method, url, answer.text)
            expected = "ExpiredAuthenticationToken" if kind == "expired" else "InvalidAuthenticationToken"
            assert answer.json()["error"]["code"] == expected, (kind, url)
            assert "WWW-Authenticate" in answer.headers


def test_a_job_submitted_with_an_alg_none_token_is_refused_and_never_runs(
    sandbox: Sandbox, session: requests.Session, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    lay = sandbox.layout
    url = (f"{sandbox.arm_endpoint}{lay.workspace_id}/jobs/forged-job?api-version=2024-04-01")
    forged = alg_none(mint_token("ci-pipeline", sandbox.arm_endpoint, key=sandbox.signing_key))
    body = {"properties": {"jobType": "Command", "command": f"touch {marker}", "computeId": lay.compute,
                           "environmentId": "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"}}
    answer = session.put(url, json=body, headers={"Authorization": f"Bearer {forged}"}, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationToken"
    time.sleep(0.5)
    assert not marker.exists()


# -- the blob front -----------------------------------------------------------------------------------------
BLOB_OPERATIONS = (  # the blob operations the toolkit and azure-storage-blob use (the front has one handler)
    ("GET", "", {"comp": "list"}),
    ("POST", "", {"restype": "service", "comp": "userdelegationkey"}),
    ("PUT", "/c1", {"restype": "container"}),
    ("GET", "/ml-globals", {"restype": "container", "comp": "list"}),
    ("PUT", "/ml-globals/b.json", {}),
    ("GET", "/ml-globals/b.json", {}),
    ("HEAD", "/ml-globals/b.json", {}),
    ("PUT", "/ml-globals/b.json", {"comp": "metadata"}),
    ("DELETE", "/ml-globals/b.json", {}),
)


def test_every_blob_operation_refuses_forged_foreign_or_expired_tokens_with_invalid_authentication_info(
    sandbox: Sandbox, session: requests.Session
) -> None:
    tokens = bad_tokens(sandbox, STORAGE_AUDIENCE, sandbox.arm_endpoint)
    for account in (sandbox.storage_account, sandbox.layout.workspace_storage_account):
        base = sandbox.blob_endpoint_of(account, "private-endpoint")  # no firewall in the way
        for method, path, query in BLOB_OPERATIONS:
            for kind, token in tokens.items():
                answer = session.request(method, base + path, params=query, data=b"{}", timeout=10, headers={
                    "Authorization": f"Bearer {token}", "x-ms-version": "2025-11-05", "x-ms-blob-type": "BlockBlob"})
                assert answer.status_code == 401, (kind, method, path, answer.text)
                assert answer.headers["x-ms-error-code"] == "InvalidAuthenticationInfo"
                assert answer.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    # A token the sandbox signed for storage still gets through to Azurite (the real path keeps working).
    good = sandbox.credential().get_token(STORAGE_AUDIENCE + "/.default").token
    listed = session.get(sandbox.private_blob_endpoint, params={"comp": "list"}, timeout=10,
                         headers={"Authorization": f"Bearer {good}", "x-ms-version": "2025-11-05"})
    assert listed.status_code == 200, listed.text


def test_entra_refuses_a_forged_client_assertion_like_aadsts50027(sandbox: Sandbox, session: requests.Session) -> None:
    forged = alg_none(github_oidc_token(key=sandbox.signing_key))
    answer = session.post(f"{sandbox.arm_endpoint}/{SANDBOX_TENANT}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id_of(sandbox.layout.ci_principal),
        "scope": sandbox.arm_endpoint + "/.default", "client_assertion": forged,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error_codes"] == [50027] and "access_token" not in answer.json()


# -- another OS user ----------------------------------------------------------------------------------------
def as_nobody(state_file: Path, calls: list[Any]) -> dict[str, Any]:
    """In a forked child switched to uid/gid 65534 (``nobody``): try to read the state file, then make ``calls``
    (port, method, path, headers) knowing only the ports. The interpreter sits under /root, which ``nobody``
    cannot enter, so the child forks rather than starting a new Python; it uses modules already imported."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out: dict[str, Any] = {"uid": os.getuid()}
            try:
                state_file.read_text()
                out["state_file"] = "read"
            except PermissionError:
                out["state_file"] = "denied"
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the CA sits in the owner's state folder: only the port is known
            statuses = []
            for port, method, path, headers in calls:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                conn.request(method, path, body=OPEN_UP, headers={"Content-Type": "application/json", **headers})
                statuses.append(conn.getresponse().status)
                conn.close()
            out["statuses"] = statuses
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(json.dumps(out))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    return dict(json.loads(data))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root")
def test_another_os_user_cannot_read_the_state_file_and_gets_401_or_403_on_every_route(sandbox: Sandbox) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sandbox-state-"))
    try:
        folder.chmod(0o755)  # the folder is open; the file's own 0600 mode is what keeps the secret
        info = process.write_info(folder, sandbox, pid=os.getpid())
        state_file = folder / process.INFO_FILE
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600 and info.env[SECRET_ENV] == sandbox.secret
        samples = _samples(sandbox)
        arm_port = int(sandbox.arm_endpoint.rsplit(":", 1)[1])
        forged = alg_none(mint_token("ci-pipeline", sandbox.arm_endpoint, key=sandbox.signing_key))
        calls: list[Any] = [(arm_port, r.method, sample_path(r.pattern, samples), {}) for r in control_routes()]
        calls += [(arm_port, r.method, sample_path(r.pattern, samples) + "?api-version=2024-01-01",
                   {"Authorization": f"Bearer {forged}"}) for r in arm_routes()]
        blob_port = int(sandbox.private_blob_endpoint.split(":")[2].split("/")[0])
        storage_forged = alg_none(mint_token("ci-pipeline", STORAGE_AUDIENCE, key=sandbox.signing_key))
        calls += [(blob_port, method, f"/{sandbox.storage_account}{path}?" + "&".join(f"{k}={v}" for k, v in
                                                                                       query.items()),
                   {"Authorization": f"Bearer {storage_forged}", "x-ms-version": "2025-11-05",
                    "x-ms-blob-type": "BlockBlob"}) for method, path, query in BLOB_OPERATIONS]
        # Azurite's own port too, with the token `--oauth basic` accepted (it now takes only the sandbox's keys).
        azurite_port = int(sandbox.info()["azuritePort"])
        calls += [(azurite_port, method, f"/{sandbox.storage_account}{path.replace('/c1', '/direct-c1')}?"
                   + "&".join(f"{k}={v}" for k, v in query.items()),
                   {"Authorization": f"Bearer {storage_forged}", "x-ms-version": "2025-11-05",
                    "x-ms-blob-type": "BlockBlob"}) for method, path, query in BLOB_OPERATIONS]
        result = as_nobody(state_file, calls)
        assert result["uid"] == NOBODY and result["state_file"] == "denied"
        assert len(result["statuses"]) == len(calls)
        refused = {(call[0], call[1], call[2].split("?")[0]): status
                   for call, status in zip(calls, result["statuses"], strict=True)}
        assert {k: v for k, v in refused.items() if v not in (401, 403)} == {}
        assert sandbox.control.account()["properties"]["networkAcls"]["defaultAction"] == "Deny"  # nothing changed
    finally:
        for item in folder.iterdir():
            item.unlink()
        folder.rmdir()
