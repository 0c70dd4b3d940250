"""Azurite's own port (issue 19.1): it listens on 127.0.0.1, where any local user finds it, so it must not take what
it cannot check. Started with ``--oauth basic`` it accepted any well-formed bearer token, signed or not
(AZURE_FACTS.md §3); its published ``devstoreaccount1`` key and the user delegation key constant in its source let
anyone sign requests too. Now it takes only the sandbox's own account keys (and SAS made from them), and the blob
front, which checks tokens, signs what it admits with the account key."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, UserDelegationKey

from cicd_tools.sandbox.identity.identity import STORAGE_AUDIENCE, mint_token
from cicd_tools.sandbox.runtime import POINTER_CONTAINER, Sandbox
from cicd_tools.sandbox.storage.connect_proxy import STORAGE_SUFFIX
from tests.integration.test_sandbox_auth import BLOB_OPERATIONS, alg_none

# What Azurite 3.35 ships (src/common/utils/constants.ts, src/blob/utils/constants.ts): anyone can read them.
PUBLISHED_DEVSTORE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PUBLISHED_DELEGATION_KEY = "I17GKLvcJUossaebtsEDZZ2RJ8GNLwLH4m7hRMxbVbkx6wNIRAABj4Rtw0FBhFuEAgmbL4gFMzUw+AStz9Sqdg=="
BLOB = "direct-probe.json"
# The front's list, with a container name Azurite's validation (3 to 63 characters) lets reach authentication.
OPERATIONS = [(method, path.replace("/c1", "/direct-c1"), query) for method, path, query in BLOB_OPERATIONS]


@pytest.fixture
def session(sandbox: Sandbox) -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(sandbox.ca_bundle)
    yield s
    s.close()


def azurite_url(sandbox: Sandbox, account: str) -> str:
    return f"https://127.0.0.1:{sandbox.info()['azuritePort']}/{account}"


def keyed(sandbox: Sandbox, account: str, key: str | None = None, url: str | None = None) -> BlobServiceClient:
    return BlobServiceClient(url or azurite_url(sandbox, account), connection_verify=str(sandbox.ca_bundle),
                             credential={"account_name": account, "account_key": key or sandbox.account_key(account)})


def test_a_forged_or_even_a_sandbox_signed_token_straight_to_azurite_is_refused_and_changes_nothing(
    sandbox: Sandbox, session: requests.Session
) -> None:
    tokens = {  # the alg:none token has the claims --oauth basic accepted: aud storage, iss sts.windows.net, times
        "alg-none": alg_none(mint_token("ci-pipeline", STORAGE_AUDIENCE, key=sandbox.signing_key)),
        "sandbox-signed": sandbox.credential().get_token(STORAGE_AUDIENCE + "/.default").token,
    }
    for account in sandbox.state.account_names():
        for method, path, query in OPERATIONS:
            for kind, token in tokens.items():
                answer = session.request(method, azurite_url(sandbox, account) + path, params=query, data=b"{}",
                                         timeout=10, headers={"Authorization": f"Bearer {token}",
                                                              "x-ms-version": "2025-11-05",
                                                              "x-ms-blob-type": "BlockBlob"})
                assert answer.status_code in (401, 403), (account, kind, method, path, answer.text)
    # Nothing was written; with the account key, through the SDK, Azurite answers.
    with keyed(sandbox, sandbox.storage_account) as service:
        assert POINTER_CONTAINER in [c.name for c in service.list_containers()]
        assert "direct-c1" not in [c.name for c in service.list_containers()]
        assert not service.get_blob_client(POINTER_CONTAINER, "b.json").exists()


def test_azurites_published_devstore_key_opens_nothing(sandbox: Sandbox) -> None:
    with keyed(sandbox, "devstoreaccount1", PUBLISHED_DEVSTORE_KEY) as service, \
            pytest.raises(HttpResponseError) as devstore:
        list(service.list_containers())
    assert devstore.value.status_code in (403, 404)
    with keyed(sandbox, sandbox.storage_account, PUBLISHED_DEVSTORE_KEY) as service, \
            pytest.raises(HttpResponseError) as ours:
        list(service.list_containers())
    assert ours.value.status_code == 403 and ours.value.error_code == "AuthorizationFailure"


def _udk_sas(account: str, container: str, blob: str, key: UserDelegationKey) -> str:
    """A read user delegation SAS, signed as Azurite 3.35 checks it (BlobSASAuthenticator, service version
    2025-11-05: azure-storage-blob 12.31 signs two more fields, which Azurite does not know)."""
    expiry, version = str(key.signed_expiry), "2025-11-05"
    string_to_sign = (f"r\n\n{expiry}\n/blob/{account}/{container}/{blob}\n{key.signed_oid}\n{key.signed_tid}\n"
                      f"{key.signed_start}\n{key.signed_expiry}\nb\n{key.signed_version}" + "\n" * 8
                      + f"{version}\nb" + "\n" * 7)
    signature = base64.b64encode(hmac.new(base64.b64decode(str(key.value)), string_to_sign.encode(),
                                          hashlib.sha256).digest()).decode()
    return urlencode({"se": expiry, "sp": "r", "sv": version, "sr": "b", "skoid": key.signed_oid,
                      "sktid": key.signed_tid, "skt": key.signed_start, "ske": key.signed_expiry, "sks": "b",
                      "skv": key.signed_version, "sig": signature})


def _forged_delegation_key(like: UserDelegationKey) -> UserDelegationKey:
    """The same key fields, the value computed with the constant Azurite publishes (as Azurite derives it)."""
    forged = UserDelegationKey()
    for name in ("signed_oid", "signed_tid", "signed_start", "signed_expiry", "signed_service", "signed_version"):
        setattr(forged, name, getattr(like, name))
    fields = "\n".join(str(getattr(like, name)) for name in ("signed_oid", "signed_tid", "signed_start",
                                                             "signed_expiry", "signed_service", "signed_version"))
    forged.value = base64.b64encode(hmac.new(PUBLISHED_DELEGATION_KEY.encode(), fields.encode(),
                                             hashlib.sha256).digest()).decode()
    return forged


def test_a_user_delegation_sas_forged_with_azurites_published_constant_is_refused(
    sandbox: Sandbox, session: requests.Session
) -> None:
    account = sandbox.storage_account
    with keyed(sandbox, account) as service:
        service.get_blob_client(POINTER_CONTAINER, BLOB).upload_blob(b'{"probe": 1}', overwrite=True)
    # The front answers Get User Delegation Key for a sandbox token (Azurite answers it only to a bearer token).
    now = dt.datetime.now(dt.UTC)
    with BlobServiceClient(sandbox.private_blob_endpoint, credential=sandbox.credential(),
                           connection_verify=str(sandbox.ca_bundle)) as front:
        key = front.get_user_delegation_key(now - dt.timedelta(minutes=5), now + dt.timedelta(hours=1))
    genuine = _udk_sas(account, POINTER_CONTAINER, BLOB, key)
    forged = _udk_sas(account, POINTER_CONTAINER, BLOB, _forged_delegation_key(key))
    for base in (azurite_url(sandbox, account), sandbox.private_blob_endpoint):
        assert session.get(f"{base}/{POINTER_CONTAINER}/{BLOB}?{genuine}", timeout=10).content == b'{"probe": 1}'
    refused = session.get(f"{azurite_url(sandbox, account)}/{POINTER_CONTAINER}/{BLOB}?{forged}", timeout=10)
    assert refused.status_code == 403, refused.text
    with keyed(sandbox, account) as service:
        service.get_blob_client(POINTER_CONTAINER, BLOB).delete_blob()


def test_the_front_re_signs_a_token_callers_writes_and_reads_with_the_account_key(
    sandbox: Sandbox, session: requests.Session
) -> None:
    with BlobServiceClient(sandbox.private_blob_endpoint, credential=sandbox.credential(),
                           connection_verify=str(sandbox.ca_bundle)) as front:
        blob = front.get_blob_client(POINTER_CONTAINER, "resigned/a b+c.json")  # a path that needs encoding
        blob.upload_blob(b"[1]", overwrite=True, metadata={"Kind": "probe"})
        assert blob.download_blob(offset=1, length=1).readall() == b"1"  # a ranged read (x-ms-range)
        assert blob.get_blob_properties().metadata == {"Kind": "probe"}  # metadata names keep their case
    # A plain HTTP Range header (signed in its documented place, where the SDK never sends one).
    token = sandbox.credential().get_token(STORAGE_AUDIENCE + "/.default").token
    ranged = session.get(f"{sandbox.private_blob_endpoint}/{POINTER_CONTAINER}/resigned/a%20b%2Bc.json", timeout=10,
                         headers={"Authorization": f"Bearer {token}", "x-ms-version": "2025-11-05",
                                  "Range": "bytes=0-0"})
    assert (ranged.status_code, ranged.content) == (206, b"[")
    with keyed(sandbox, sandbox.storage_account) as service:  # what Azurite stored, read with the key
        stored = service.get_blob_client(POINTER_CONTAINER, "resigned/a b+c.json")
        assert stored.download_blob().readall() == b"[1]"
        stored.delete_blob()


def test_a_host_style_token_call_through_the_storage_proxy_is_re_signed_for_its_host_name(sandbox: Sandbox) -> None:
    # azure-ai-ml's datastore transfers build https://{account}.blob.{suffix}: Azurite reads the account from the
    # host, so the signature covers /{account}/{container}/{blob}, not the path-style form.
    account = sandbox.layout.workspace_storage_account  # its firewall admits the agent origin the proxy leads to
    with keyed(sandbox, account) as service:
        service.create_container("host-style")
    try:
        with BlobServiceClient(f"https://{account}.blob.{STORAGE_SUFFIX}", credential=sandbox.credential(),
                               connection_verify=str(sandbox.ca_bundle),
                               proxies={"https": sandbox.storage_proxy}) as front:
            blob = front.get_blob_client("host-style", "a b/c.json")
            blob.upload_blob(b"{}", overwrite=True)
            assert blob.download_blob().readall() == b"{}"
    finally:
        with keyed(sandbox, account) as service:
            service.delete_container("host-style")
