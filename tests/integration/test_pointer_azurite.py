"""The pointer contract on real Azurite: CAS writes, history, read-back, rollback, strict readers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from cicd_tools.cli.main import main
from cicd_tools.pointer.contract import PublishResult, list_history, publish_pointer, read_pointer, rollback_pointer
from cicd_tools.pointer.model import CodeAssetPointer, pointer_blob_name
from cicd_tools.support.errors import ConflictError, ContractViolation
from tests.integration.conftest import AzuriteHandle

WS = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def make_pointer(asset: str, version: str, **extra: str) -> CodeAssetPointer:
    return CodeAssetPointer(
        assetName=asset, version=version, assetId=f"{WS}/codes/{asset}/versions/{version}", **extra
    )


@pytest.fixture
def container(trust_azurite: AzuriteHandle, request: pytest.FixtureRequest) -> Iterator[ContainerClient]:
    """A fresh container per test, reached with the account key over HTTPS (Azurite takes no tokens; the token
    path, through the sandbox's blob front, is test_pointer_sandbox.py's)."""
    service = BlobServiceClient.from_connection_string(trust_azurite.connection_string())
    name = "c" + str(abs(hash(request.node.nodeid)) % 10**12)
    client = service.get_container_client(name)
    client.create_container()
    yield client
    client.delete_container()


def test_publish_then_read_returns_the_published_version(container: ContainerClient) -> None:
    result = publish_pointer(container, make_pointer("training-code", "7", requestedVersion="9"))
    assert result.verified and result.previous_version is None
    pointer = read_pointer(container, "training-code")
    assert (pointer.version, pointer.requestedVersion) == ("7", "9")
    assert pointer.assetId.endswith("/codes/training-code/versions/7")


def test_every_publication_lands_in_history_newest_first(container: ContainerClient) -> None:
    for version in ("1", "2", "3"):
        publish_pointer(container, make_pointer("a", version))
    assert [rec.version for _, rec in list_history(container, "a")] == ["3", "2", "1"]


def test_publish_refuses_a_version_the_workspace_does_not_hold(container: ContainerClient) -> None:
    with pytest.raises(ContractViolation, match="does not hold"):
        publish_pointer(container, make_pointer("a", "42"), version_exists=lambda asset, v: v == "7")
    assert not list(container.list_blobs())


def test_rollback_republishes_an_old_record_and_records_it(container: ContainerClient) -> None:
    publish_pointer(container, make_pointer("a", "1"))
    publish_pointer(container, make_pointer("a", "2"))
    result = rollback_pointer(container, "a", "1")
    assert read_pointer(container, "a").version == "1"
    assert result.pointer.rollbackOf is not None and result.pointer.rollbackOf.endswith("_1.json")
    assert [rec.version for _, rec in list_history(container, "a")] == ["1", "2", "1"]


def test_reader_tolerates_unknown_fields(container: ContainerClient) -> None:
    doc = make_pointer("a", "3").model_dump(mode="json") | {"addedLater": {"x": 1}}
    container.upload_blob(pointer_blob_name("a"), json.dumps(doc))
    assert read_pointer(container, "a").version == "3"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"schemaVersion": 2, "version": "1"}).encode(), "schemaVersion 2"),
        (json.dumps({"schemaVersion": 1, "assetName": "a", "version": 3, "assetId": "x"}).encode(), "version"),
        (
            json.dumps(
                {"schemaVersion": 1, "assetName": "a", "version": "3", "assetId": f"{WS}/codes/a/versions/4"}
            ).encode(),
            "assetId names a:4",
        ),
    ],
)
def test_malformed_or_foreign_pointer_is_a_contract_violation(
    container: ContainerClient, body: bytes, reason: str
) -> None:
    container.upload_blob(pointer_blob_name("a"), body)
    with pytest.raises(ContractViolation, match=reason):
        read_pointer(container, "a")


def test_sixteen_concurrent_publishers_lose_nothing(container: ContainerClient) -> None:
    """Each publisher ends published-and-in-history or with a conflict; the last write is the pointer."""
    barrier = threading.Barrier(16)

    def publish(i: int) -> PublishResult | ConflictError:
        barrier.wait()
        try:
            return publish_pointer(container, make_pointer("shared", str(i + 1)), max_attempts=8)
        except ConflictError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(publish, range(16)))
    published = [o for o in outcomes if isinstance(o, PublishResult)]
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(published) + len(conflicts) == 16 and published
    history = {rec.version: (name, rec) for name, rec in list_history(container, "shared")}
    # every successful publication is in history, exactly once, and nothing else is
    assert sorted(history) == sorted(p.pointer.version for p in published)
    for result in published:
        assert history[result.pointer.version][0] == result.history_blob
    # the final pointer is the publication whose write is the blob's current ETag
    final_etag = container.get_blob_client(pointer_blob_name("shared")).get_blob_properties().etag
    winners = [p for p in published if p.etag == final_etag]
    assert len(winners) == 1
    assert read_pointer(container, "shared").version == winners[0].pointer.version
    for exc in conflicts:
        assert exc.code in {"PointerConflict", "PointerSuperseded"}


def test_concurrent_publishers_of_one_registration_time_retry_the_swap(container: ContainerClient) -> None:
    """Same registeredAtUtc: nobody is superseded, so every writer must win its compare-and-swap."""
    barrier = threading.Barrier(8)
    stamp = "2026-01-01T00:00:00.000000Z"

    def publish(i: int) -> PublishResult:
        barrier.wait()
        return publish_pointer(
            container, make_pointer("tied", str(i + 1), registeredAtUtc=stamp), max_attempts=40
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(publish, range(8)))
    assert max(r.attempts for r in results) > 1  # the swap really was contended
    assert sorted(rec.version for _, rec in list_history(container, "tied")) == sorted(
        str(i + 1) for i in range(8)
    )
    final_etag = container.get_blob_client(pointer_blob_name("tied")).get_blob_properties().etag
    (winner,) = [r for r in results if r.etag == final_etag]
    assert read_pointer(container, "tied").version == winner.pointer.version


def test_older_registration_does_not_replace_a_newer_pointer(container: ContainerClient) -> None:
    publish_pointer(container, make_pointer("a", "2", registeredAtUtc="2026-02-01T00:00:00.000000Z"))
    with pytest.raises(ConflictError, match="newer registration"):
        publish_pointer(container, make_pointer("a", "1", registeredAtUtc="2026-01-01T00:00:00.000000Z"))
    assert read_pointer(container, "a").version == "2"
    assert [rec.version for _, rec in list_history(container, "a")] == ["2"]


def test_cli_write_and_read_with_a_connection_string(
    trust_azurite: AzuriteHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_STORAGE_CONNECTION_STRING", trust_azurite.connection_string())
    BlobServiceClient.from_connection_string(trust_azurite.connection_string()).get_container_client(
        "ml-globals"
    ).create_container()
    base = ["--auth-mode", "key", "--container", "ml-globals", "--skip-workspace-check"]
    code = main(["pointer", "write", "--asset", "cli-asset", "--version", "5", "--asset-id",
                 f"{WS}/codes/cli-asset/versions/5", *base])
    assert code == 0
    capsys.readouterr()
    assert main(["--output", "json", "pointer", "read", "--asset", "cli-asset", *base[:-1]]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["version"] == "5"
    assert trust_azurite.connection_string().split("AccountKey=")[1].split(";")[0] not in out.err


def test_cli_read_of_foreign_blob_exits_5_without_traceback(
    trust_azurite: AzuriteHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = BlobServiceClient.from_connection_string(trust_azurite.connection_string())
    container = service.get_container_client("foreign")
    container.create_container()
    container.upload_blob(pointer_blob_name("x"), b"<xml/>")
    monkeypatch.setenv("CICD_STORAGE_CONNECTION_STRING", trust_azurite.connection_string())
    code = main(["pointer", "read", "--asset", "x", "--auth-mode", "key", "--container", "foreign"])
    err = capsys.readouterr().err
    assert code == 5
    assert "not JSON" in err and "Traceback" not in err


# --- readers never invent data ----------------------------------------------------------------------------


def foreign_doc(asset: str, version: str) -> dict[str, object]:
    """A valid pointer as another tool writes it: the three fields consumers need, no provenance."""
    return {"schemaVersion": 1, "assetName": asset, "version": version,
            "assetId": f"{WS}/codes/{asset}/versions/{version}"}


def test_a_pointer_without_registration_time_stays_without_it_and_blocks_nothing(container: ContainerClient) -> None:
    container.upload_blob(pointer_blob_name("a"), json.dumps(foreign_doc("a", "3")))
    assert read_pointer(container, "a").registeredAtUtc is None
    result = publish_pointer(container, make_pointer("a", "4", registeredAtUtc="2020-01-01T00:00:00.000000Z"))
    assert (result.previous_version, result.verified) == ("3", True)
    assert read_pointer(container, "a").version == "4"


def test_a_registration_without_time_replaces_a_timed_pointer_and_rollback_still_works(
    container: ContainerClient,
) -> None:
    publish_pointer(container, make_pointer("a", "1", registeredAtUtc="2030-01-01T00:00:00.000000Z"))
    publish_pointer(container, CodeAssetPointer.model_validate(foreign_doc("a", "2")))
    assert read_pointer(container, "a").version == "2"
    assert [rec.registeredAtUtc for _, rec in list_history(container, "a")] == [
        None, "2030-01-01T00:00:00.000000Z"]
    rollback_pointer(container, "a", "1")
    assert read_pointer(container, "a").version == "1"
    rollback_pointer(container, "a", "2")
    restored = read_pointer(container, "a")
    assert (restored.version, restored.registeredAtUtc) == ("2", None)


def test_a_pointer_blob_over_64_kib_is_refused_clearly(container: ContainerClient) -> None:
    doc = foreign_doc("a", "3") | {"padding": "x" * (64 * 1024)}
    container.upload_blob(pointer_blob_name("a"), json.dumps(doc))
    with pytest.raises(ContractViolation, match="more than 65536 bytes") as err:
        read_pointer(container, "a")
    assert err.value.code == "PointerTooLarge"
    at_cap = foreign_doc("a", "3")
    at_cap["padding"] = ""
    at_cap["padding"] = "x" * (64 * 1024 - len(json.dumps(at_cap).encode()))
    container.upload_blob(pointer_blob_name("a"), json.dumps(at_cap).encode(), overwrite=True)
    assert read_pointer(container, "a").version == "3"  # exactly 64 KiB is still a pointer


def test_an_empty_pointer_blob_is_a_contract_violation(container: ContainerClient) -> None:
    container.upload_blob(pointer_blob_name("a"), b"")
    with pytest.raises(ContractViolation, match="not JSON"):
        read_pointer(container, "a")


def test_cli_history_lists_records_without_a_registration_time(
    container: ContainerClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    trust_azurite: AzuriteHandle,
) -> None:
    publish_pointer(container, CodeAssetPointer.model_validate(foreign_doc("a", "2")))
    monkeypatch.setenv("CICD_STORAGE_CONNECTION_STRING", trust_azurite.connection_string())
    code = main(["pointer", "history", "--asset", "a", "--auth-mode", "key", "--container", container.container_name])
    out = capsys.readouterr().out
    assert code == 0
    assert " 2 " in out


# --- one validator: BOM, number version, foreign workspace; --force-replace repairs (issue 19, point 6) -------------


@pytest.mark.parametrize(("body", "code"), [
    (b"\xef\xbb\xbf" + json.dumps(foreign_doc("a", "3")).encode(), "PointerBOM"),
    (json.dumps(foreign_doc("a", "3") | {"version": 3}).encode(), "PointerInvalid"),
    (b"  " + json.dumps(foreign_doc("a", "3")).encode(), "PointerMalformed"),
    (json.dumps(foreign_doc("b", "3")).encode(), "PointerInvalid"),  # another asset's document
])
def test_the_reader_refuses_what_the_factory_refuses(container: ContainerClient, body: bytes, code: str) -> None:
    container.upload_blob(pointer_blob_name("a"), body)
    with pytest.raises(ContractViolation) as err:
        read_pointer(container, "a")
    assert err.value.code == code


def test_an_asset_id_of_another_workspace_is_refused_by_a_reader_that_knows_its_workspace(
    container: ContainerClient,
) -> None:
    other = WS.replace("/workspaces/ws", "/workspaces/someone-elses")
    container.upload_blob(pointer_blob_name("a"), json.dumps(
        {"schemaVersion": 1, "assetName": "a", "version": "3", "assetId": f"{other}/codes/a/versions/3"}))
    with pytest.raises(ContractViolation, match="not at a code version of this workspace") as err:
        read_pointer(container, "a", workspace_id=WS)
    assert err.value.code == "PointerForeignWorkspace"
    container.upload_blob(pointer_blob_name("a"), json.dumps(foreign_doc("a", "3")), overwrite=True)
    assert read_pointer(container, "a", workspace_id=WS.replace("resourceGroups", "resourcegroups")).version == "3"


@pytest.mark.parametrize("broken", [
    b'{"schemaVersion": 1, "padding": "' + b"x" * (1024 * 1024) + b'"}',  # oversized (1 MiB)
    b"\x00\x01 not json",
    b"\xef\xbb\xbf" + json.dumps(foreign_doc("a", "9")).encode(),
])
def test_force_replace_repairs_a_broken_pointer_and_keeps_the_history(
    container: ContainerClient, broken: bytes
) -> None:
    publish_pointer(container, make_pointer("a", "1"))
    container.upload_blob(pointer_blob_name("a"), broken, overwrite=True)
    with pytest.raises(ContractViolation) as err:
        publish_pointer(container, make_pointer("a", "2"))
    assert "--force-replace" in err.value.hint
    result = publish_pointer(container, make_pointer("a", "2"), force_replace=True)
    assert result.replaced and result.previous_version is None and result.verified
    assert read_pointer(container, "a").version == "2"
    assert [rec.version for _, rec in list_history(container, "a")] == ["2", "1"]


def test_cli_pointer_read_checks_the_workspace_and_write_force_replace_repairs(
    trust_azurite: AzuriteHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = BlobServiceClient.from_connection_string(trust_azurite.connection_string())
    container = service.get_container_client("forced")
    container.create_container()
    monkeypatch.setenv("CICD_STORAGE_CONNECTION_STRING", trust_azurite.connection_string())
    storage = ["--auth-mode", "key", "--container", "forced"]
    workspace = ["--subscription-id", "0000", "--resource-group", "rg", "--workspace", "ws"]
    other = WS.replace("/workspaces/ws", "/workspaces/other")
    container.upload_blob(pointer_blob_name("x"), json.dumps(
        {"schemaVersion": 1, "assetName": "x", "version": "3", "assetId": f"{other}/codes/x/versions/3"}))
    assert main(["pointer", "read", "--asset", "x", *storage, *workspace]) == 5
    assert "PointerForeignWorkspace" in capsys.readouterr().err
    assert main(["pointer", "write", "--asset", "x", "--version", "3", "--asset-id", f"{other}/codes/x/versions/3",
                 *storage, *workspace, "--skip-workspace-check"]) == 5  # the writer applies the same rule
    assert "PointerForeignWorkspace" in capsys.readouterr().err
    container.upload_blob(pointer_blob_name("x"), b"x" * (70 * 1024), overwrite=True)
    argv = ["pointer", "write", "--asset", "x", "--version", "4", *storage, *workspace, "--skip-workspace-check"]
    assert main(argv) == 5
    assert "--force-replace" in capsys.readouterr().err
    assert main(["--output", "json", *argv, "--force-replace"]) == 0
    assert "PointerTooLarge" in json.loads(capsys.readouterr().out)["replaced"]
    assert main(["pointer", "read", "--asset", "x", "--field", "version", *storage, *workspace]) == 0
    assert capsys.readouterr().out.strip() == "4"


@pytest.mark.parametrize("ci", ["azure-devops", "github"])
def test_pointer_read_prints_hostile_fields_without_logging_commands(
    trust_azurite: AzuriteHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    """Issue 19 point 2: a pointer's free-text fields (another tool wrote them) reach a CI log defused."""
    from tests.unit.test_ci_injection import PAYLOADS, check_azure_devops, check_github, runner_lines

    service = BlobServiceClient.from_connection_string(trust_azurite.connection_string())
    container = service.get_container_client(f"hostile-{ci}")
    container.create_container()
    doc = foreign_doc("h", "3") | {"sourceBranch": PAYLOADS["lf"], "buildId": PAYLOADS["cr"],
                                   "sourceVersion": PAYLOADS["escape"]}
    container.upload_blob(pointer_blob_name("h"), json.dumps(doc))
    monkeypatch.setenv("CICD_STORAGE_CONNECTION_STRING", trust_azurite.connection_string())
    for name in ("TF_BUILD", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TF_BUILD" if ci == "azure-devops" else "GITHUB_ACTIONS", "true")
    assert main(["pointer", "read", "--asset", "h", "--auth-mode", "key", "--container", f"hostile-{ci}"]) == 0
    captured = capsys.readouterr()
    lines = runner_lines(captured.out + "\n" + captured.err)
    assert (check_azure_devops if ci == "azure-devops" else check_github)(lines, set()) == []
    assert "PWNED" in captured.out and not any("\x1b" in line for line in lines)


def test_a_mistyped_pointer_names_the_close_published_one_instead_of_asking_to_publish_it(
    container: ContainerClient,
) -> None:
    """Issue 20 case 4: `aml verify --pointer trainin-code` suggested publishing the mistyped pointer."""
    from cicd_tools.aml.operations import pointer_history

    publish_pointer(container, make_pointer("training-code", "7"))
    publish_pointer(container, make_pointer("validation-code", "7"))
    for read in (lambda: read_pointer(container, "trainin-code"), lambda: pointer_history(container, "trainin-code")):
        with pytest.raises(ContractViolation) as info:
            read()
        assert "Did you mean 'training-code'?" in str(info.value.hint)
        assert "pointer write" not in str(info.value.hint) and "--pointer" not in str(info.value.hint)
    with pytest.raises(ContractViolation) as info:
        read_pointer(container, "scoring-code")  # nothing close: how to publish it, and what exists
    assert "Published pointers: training-code, validation-code" in str(info.value.hint)
    assert "pointer write" in str(info.value.hint)


# --- the typed operations the CLI's pointer read/history/rollback call ---------------------------------------


def test_the_pointer_operations_read_list_and_roll_back_on_azurite(container: ContainerClient) -> None:
    from cicd_tools.pointer.operations import (
        PointerReadRequest,
        PointerRollbackRequest,
        publication_history,
        read_latest,
        roll_back,
    )
    from cicd_tools.settings.resolve import Settings

    storage = Settings(storage_account="unused")  # the container is given: no client is built from it
    workspace = Settings(subscription_id="0000", resource_group="rg", workspace="ws")
    for version in ("1", "2"):
        publish_pointer(container, make_pointer("a", version))
    assert read_latest(PointerReadRequest("a", storage, workspace), container=container).version == "2"
    entries = publication_history("a", storage, container=container)
    assert [e.record.version for e in entries] == ["2", "1"]
    assert all(e.blob.startswith("code-assets/a/history/") for e in entries)  # the contract's layout
    result = roll_back(PointerRollbackRequest("a", "1", storage), container=container)  # no workspace: no lookup
    assert result.pointer.version == "1" and result.pointer.rollbackOf == entries[1].blob
    assert read_latest(PointerReadRequest("a", storage, workspace), container=container).version == "1"


def test_the_pointer_read_operation_refuses_an_asset_id_of_another_workspace(container: ContainerClient) -> None:
    from cicd_tools.pointer.operations import PointerReadRequest, read_latest
    from cicd_tools.settings.resolve import Settings

    publish_pointer(container, make_pointer("a", "1"))
    other = Settings(subscription_id="0000", resource_group="rg", workspace="other-ws")
    with pytest.raises(ContractViolation):
        read_latest(PointerReadRequest("a", Settings(), other), container=container)
