"""Registration logic without Azure: actual-vs-requested version, dedup, batches, CLI outputs and files."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.codeassets import register as reg
from cicd_tools.codeassets.hashing import content_hash
from cicd_tools.codeassets.sdk import SdkCode, VersionConflict
from cicd_tools.codeassets.staging import MARKER_FILE
from cicd_tools.codeassets.workspace import CodeVersionInfo, WorkspaceRef
from cicd_tools.support.errors import CicdError, UsageError

WS = WorkspaceRef("sub", "rg", "ws", "https://arm.example.test")


class FakeWorkspace:
    """Dedups by content hash like Azure ML: the lookup matches regardless of name and the SDK returns the
    first hit's name AND version (AZURE_FACTS.md §1); records what was uploaded."""

    def __init__(self) -> None:
        self.by_hash: dict[str, list[tuple[str, str]]] = {}  # sha -> [(name, version)], first registered first
        self.uploaded: list[tuple[str, str, Path]] = []
        self.lock = threading.Lock()

    def create(self, client: Any, name: str, version: str, path: Path) -> SdkCode:
        sha = content_hash(path).sha256
        with self.lock:
            hits = self.by_hash.get(sha)
            if hits:
                name, version = hits[0]
            else:
                if name == "taken" and any(v == version for held in self.by_hash.values() for _, v in held):
                    raise VersionConflict(f"{name}:{version} exists")
                self.by_hash.setdefault(sha, []).append((name, version))
                self.uploaded.append((name, version, path))
        return SdkCode(name, version, WS.code_version_id(name, version), f"https://s/c/{path.name}", sha)

    def find_by_hash(self, name: str, sha: str) -> list[CodeVersionInfo]:
        return [CodeVersionInfo(WS.code_version_id(n, v), n, v, None, sha, "202208", None)
                for n, v in self.by_hash.get(sha, [])]


@pytest.fixture
def fake() -> FakeWorkspace:
    return FakeWorkspace()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "src" / "train"
    folder.mkdir(parents=True)
    (folder / "train.py").write_text("print(1)\n")
    return folder


def registrar(fake: FakeWorkspace, repo: Path | None = None) -> reg.Registrar:
    return reg.Registrar(client=object(), lookup=fake, repo_root=repo, create=fake.create)


def test_unchanged_code_returns_the_existing_version_and_says_dedup(fake: FakeWorkspace, code: Path) -> None:
    first = registrar(fake).register(reg.AssetSpec("train", code), "1")
    second = registrar(fake).register(reg.AssetSpec("train", code), "2")
    assert (first.version, first.dedup) == ("1", False)
    assert (second.requested_version, second.version, second.dedup) == ("2", "1", True)
    assert second.asset_id.endswith("/codes/train/versions/1")
    assert any("already registered as version 1" in w for w in second.warnings)
    assert len(fake.uploaded) == 1


def test_a_rerun_with_the_same_version_is_dedup_without_a_version_change(fake: FakeWorkspace, code: Path) -> None:
    registrar(fake).register(reg.AssetSpec("train", code), "5")
    again = registrar(fake).register(reg.AssetSpec("train", code), "5")
    assert (again.version, again.dedup, again.older_than_requested) == ("5", True, False)


def test_changed_code_gets_the_requested_version(fake: FakeWorkspace, code: Path) -> None:
    registrar(fake).register(reg.AssetSpec("train", code), "1")
    (code / "train.py").write_text("print(2)\n")
    changed = registrar(fake).register(reg.AssetSpec("train", code), "2")
    assert (changed.version, changed.dedup) == ("2", False)


def test_unique_registers_a_staged_copy_and_gets_a_new_version(fake: FakeWorkspace, code: Path) -> None:
    registrar(fake).register(reg.AssetSpec("train", code), "1")
    unique = registrar(fake).register(reg.AssetSpec("train", code), "2", unique=True)
    assert (unique.version, unique.dedup, unique.unique) == ("2", False, True)
    path = fake.uploaded[-1][2]
    assert path.name == "train" and path != code
    assert not path.exists()  # the staging folder is gone after registration
    assert unique.content_hash != content_hash(code).sha256
    assert not (code / MARKER_FILE).exists()


def test_a_symlink_out_of_the_repository_is_refused_before_the_sdk_runs(
    fake: FakeWorkspace, code: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("agent secret\n")
    (code / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(CicdError) as err:
        registrar(fake, repo=tmp_path / "repo").register(reg.AssetSpec("train", code), "1")
    assert err.value.exit_code == 2 and "outside the repository" in err.value.message
    assert fake.uploaded == []


def test_an_empty_folder_is_refused_before_the_sdk_runs(fake: FakeWorkspace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CicdError) as err:
        registrar(fake).register(reg.AssetSpec("train", empty), "1")
    assert err.value.exit_code == 2
    assert fake.uploaded == []


def test_the_requested_version_defaults_to_the_ci_build_id() -> None:
    assert reg.default_version({"BUILD_BUILDID": "812"}) == "812"
    assert reg.default_version({"GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "2"}) == "99-2"
    assert reg.default_version({"GITHUB_RUN_ID": "99"}) == "99-1"
    assert reg.resolve_requested_version("7", {"BUILD_BUILDID": "812"}) == "7"


def test_no_version_and_no_ci_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no version to request"):
        reg.resolve_requested_version(None, {})


@pytest.mark.parametrize("bad", ["", "a b", "1/2", "-1", "x" * 101])
def test_a_version_that_cannot_be_a_version_is_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        reg.validate_version(bad)


def test_asset_flags_parse_name_equals_path() -> None:
    assert reg.parse_asset_arg("training-code=src/train") == reg.AssetSpec("training-code", Path("src/train"))
    for bad in ("training-code", "=src", "bad name=src"):
        with pytest.raises(UsageError):
            reg.parse_asset_arg(bad)


def test_one_failure_in_a_batch_does_not_hide_the_other_results(
    fake: FakeWorkspace, code: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    specs = [reg.AssetSpec("train", code), reg.AssetSpec("validate", empty)]
    outcomes = reg.register_many(lambda spec: registrar(fake), specs, "3")
    assert [o.spec.name for o in outcomes] == ["train", "validate"]
    assert outcomes[0].result is not None and outcomes[0].result.version == "3"
    assert outcomes[1].result is None and outcomes[1].error is not None
    assert reg.worst_exit_code(outcomes) == 2


def test_the_worst_exit_code_of_a_batch_wins() -> None:
    spec = reg.AssetSpec("a", Path("."))
    outcomes = [reg.AssetOutcome(spec, error=UsageError("x")), reg.AssetOutcome(spec, error=VersionConflict("y")),
                reg.AssetOutcome(spec)]
    assert reg.worst_exit_code(outcomes) == 5
    assert reg.worst_exit_code([reg.AssetOutcome(spec)]) == 0


def test_batch_assets_register_concurrently(code: Path, tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=30)

    class Meeting(FakeWorkspace):
        def create(self, client: Any, name: str, version: str, path: Path) -> SdkCode:
            barrier.wait()  # both registrations must be in flight at once, or this times out
            return super().create(client, name, version, path)

    other = tmp_path / "validate"
    other.mkdir()
    (other / "v.py").write_text("print(2)\n")
    meeting = Meeting()
    outcomes = reg.register_many(lambda spec: registrar(meeting),
                                 [reg.AssetSpec("train", code), reg.AssetSpec("validate", other)], "1")
    assert [o.result.version for o in outcomes if o.result] == ["1", "1"]


def test_each_outcome_is_heard_while_the_other_registration_is_still_running(code: Path, tmp_path: Path) -> None:
    heard: list[str] = []
    first_heard = threading.Event()

    class Slow(FakeWorkspace):
        def create(self, client: Any, name: str, version: str, path: Path) -> SdkCode:
            if name == "validate":  # still uploading when train's answer is recorded
                assert first_heard.wait(timeout=30), "train's outcome was not reported before validate finished"
            return super().create(client, name, version, path)

    def on_done(outcome: reg.AssetOutcome) -> None:
        heard.append(f"{outcome.spec.name}:{outcome.result.version if outcome.result else None}")
        first_heard.set()

    other = tmp_path / "validate"
    other.mkdir()
    (other / "v.py").write_text("print(2)\n")
    slow = Slow()
    outcomes = reg.register_many(lambda spec: registrar(slow),
                                 [reg.AssetSpec("train", code), reg.AssetSpec("validate", other)], "1",
                                 on_done=on_done)
    assert heard == ["train:1", "validate:1"] and len(outcomes) == 2


def test_a_registration_that_answers_within_the_grace_after_a_signal_is_still_heard(
    code: Path, tmp_path: Path
) -> None:
    """Issue 18: the signal interrupts the wait; the registration Azure ML answers a moment later (well within
    CANCEL_GRACE) still reaches ``on_done`` before the cancel goes on (a join that a signal interrupted used to
    mark the thread stopped, so the grace did not wait at all)."""
    import signal

    from cicd_tools.support.errors import Interrupted

    in_flight = threading.Event()

    class Answering(FakeWorkspace):
        def create(self, client: Any, name: str, version: str, path: Path) -> SdkCode:
            if name == "validate":
                in_flight.set()
                threading.Event().wait(reg.CANCEL_GRACE / 4)  # the PUT answers shortly after the signal
            return super().create(client, name, version, path)

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted("received signal SIGALRM")

    heard: list[str] = []
    other = tmp_path / "validate"
    other.mkdir()
    (other / "v.py").write_text("print(2)\n")
    answering = Answering()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        threading.Thread(target=lambda: in_flight.wait(30) and signal.setitimer(signal.ITIMER_REAL, 0.01),
                         daemon=True).start()
        with pytest.raises(Interrupted):
            reg.register_many(lambda spec: registrar(answering),
                              [reg.AssetSpec("train", code), reg.AssetSpec("validate", other)], "1",
                              on_done=lambda outcome: heard.append(outcome.spec.name))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sorted(heard) == ["train", "validate"]


def test_duplicate_names_in_one_batch_are_refused(code: Path) -> None:
    with pytest.raises(UsageError, match="unique"):
        reg.register_many(lambda spec: registrar(FakeWorkspace()),
                          [reg.AssetSpec("a", code), reg.AssetSpec("a", code)], "1")


# --- the CLI handler, with the SDK and the workspace faked -------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, fake: FakeWorkspace, tmp_path: Path) -> FakeWorkspace:
    from cicd_tools.codeassets import sdk, workspace

    monkeypatch.setattr(sdk, "build_ml_client", lambda *a, **k: object())
    monkeypatch.setattr(sdk, "create_code", fake.create)
    monkeypatch.setattr(workspace.WorkspaceCodes, "__init__", lambda self, ws, cred, client=None: None)
    monkeypatch.setattr(workspace.WorkspaceCodes, "find_by_hash",
                        lambda self, n, s, v="202208": fake.find_by_hash(n, s))
    monkeypatch.setattr(workspace.WorkspaceCodes, "close", lambda self: None)
    monkeypatch.setattr("cicd_tools.credentials.build_credential", lambda: object())
    for var, value in {"CICD_SUBSCRIPTION_ID": "sub", "CICD_RESOURCE_GROUP": "rg", "CICD_WORKSPACE": "ws",
                       "CICD_ARM_ENDPOINT": "https://arm.example.test"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    return fake


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    from cicd_tools.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_cli_reports_the_actual_version_in_json_outputs_and_result_file(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_file = tmp_path / "out" / "code.json"
    run_cli(["--output", "json", "code", "register", "--name", "train", "--path", str(code), "--version", "1"],
            capsys)
    rc, doc, err = run_cli(["--output", "json", "--ci", "plain", "code", "register", "--name", "train", "--path",
                            str(code), "--version", "2", "--result-file", str(result_file),
                            "--output-var-version", "trainVersion"], capsys)
    assert rc == 0
    assert {k: doc[k] for k in ("name", "version", "requestedVersion", "dedup")} == {
        "name": "train", "version": "1", "requestedVersion": "2", "dedup": True}
    assert doc["assetId"].endswith("/codes/train/versions/1")
    assert json.loads(result_file.read_text()) == doc
    assert "output trainVersion=1" in err and "output codeAssetId=" in err


def test_cli_text_says_plainly_when_dedup_returned_an_older_version(
    cli_env: FakeWorkspace, code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(["code", "register", "--name", "train", "--path", str(code), "--version", "1"], capsys)
    rc, text, _ = run_cli(["code", "register", "--name", "train", "--path", str(code), "--version", "2"], capsys)
    assert rc == 0
    assert "requested version 2, Azure ML returned EXISTING version 1" in text


def test_cli_batch_prints_a_list_and_exits_with_the_worst_code(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "77")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, docs, _ = run_cli(["--output", "json", "code", "register", "--asset", f"training-code={code}",
                           "--asset", f"validation-code={empty}"], capsys)
    assert rc == 2
    assert [d["name"] for d in docs] == ["training-code", "validation-code"]
    assert docs[0]["version"] == "77-1" and docs[0]["error"] is None
    assert docs[1]["version"] is None and docs[1]["error"]["exitCode"] == 2


def test_cli_single_failure_is_reported_as_an_error_with_its_exit_code(
    cli_env: FakeWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(["code", "register", "--name", "train", "--path", str(empty), "--version", "1"], capsys)
    assert rc == 2
    assert "nothing to hash" in err


def test_batch_ci_output_names_carry_the_asset_name() -> None:
    from cicd_tools.cli._code_assets import output_name

    assert output_name("codeVersion", "training-code", batch=True) == "training_code_codeVersion"
    assert output_name("codeVersion", "training-code", batch=False) == "codeVersion"


# --- asset name truth: the hash lookup crosses names ----------------------------------------------------


def test_another_names_asset_coming_back_is_a_contract_violation_naming_both(fake: FakeWorkspace, code: Path) -> None:
    registrar(fake).register(reg.AssetSpec("training-code", code), "1")
    outcomes = reg.register_many(lambda spec: registrar(fake), [reg.AssetSpec("validation-code", code)], "2")
    outcome = outcomes[0]
    assert isinstance(outcome.error, reg.AssetNameMismatch)
    assert outcome.exit_code == 5
    assert outcome.pointer is None
    assert outcome.result is not None
    assert (outcome.result.name, outcome.result.returned_name, outcome.result.version) == (
        "validation-code", "training-code", "1")
    message = outcome.error.message
    assert "validation-code:2" in message and WS.code_version_id("training-code", "1") in message
    assert "--name-marker" in outcome.error.hint


def test_the_pointer_step_never_runs_for_another_names_asset(fake: FakeWorkspace, code: Path) -> None:
    published: list[str] = []

    def after(outcome: reg.AssetOutcome) -> reg.AssetOutcome:
        assert outcome.result is not None
        published.append(outcome.result.name)
        return outcome

    specs = [reg.AssetSpec("training-code", code), reg.AssetSpec("validation-code", code)]
    first = reg.register_many(lambda spec: registrar(fake), specs[:1], "1", after=after)
    second = reg.register_many(lambda spec: registrar(fake), specs[1:], "1", after=after)
    assert first[0].error is None and isinstance(second[0].error, reg.AssetNameMismatch)
    assert published == ["training-code"]


def test_name_marker_keeps_dedup_within_a_name_and_never_across_names(fake: FakeWorkspace, code: Path) -> None:
    from cicd_tools.codeassets.staging import NAME_MARKER_FILE

    def run(version: str) -> list[reg.AssetOutcome]:
        specs = [reg.AssetSpec("training-code", code), reg.AssetSpec("validation-code", code)]
        return reg.register_many(lambda spec: registrar(fake), specs, version, name_marker=True)

    first = run("1")
    assert [(o.error, o.result.returned_name, o.result.version) for o in first if o.result] == [
        (None, "training-code", "1"), (None, "validation-code", "1")]
    assert len(fake.uploaded) == 2
    again = run("2")
    assert [(o.error, o.result.version, o.result.dedup) for o in again if o.result] == [
        (None, "1", True), (None, "1", True)]
    assert len(fake.uploaded) == 2
    assert not (code / NAME_MARKER_FILE).exists()
    assert all(o.result and o.result.name_marker for o in again)


def test_cli_batch_of_one_folder_under_two_names_outputs_only_the_true_asset(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_file = tmp_path / "result.json"
    rc, docs, err = run_cli(["--output", "json", "--ci", "plain", "code", "register", "--version", "7",
                             "--asset", f"training-code={code}", "--asset", f"validation-code={code}",
                             "--result-file", str(result_file)], capsys)
    assert rc == 5
    # Registered concurrently: whichever name reaches the workspace first owns the content.
    winner = next(d for d in docs if d["error"] is None)
    loser = next(d for d in docs if d["error"] is not None)
    assert (winner["version"], winner["returnedName"]) == ("7", winner["name"])
    assert (loser["version"], loser["assetId"], loser["returnedName"]) == (None, None, winner["name"])
    assert loser["returnedAssetId"] == WS.code_version_id(winner["name"], "7")
    assert loser["error"]["error"] == "AssetNameMismatch" and loser["exitCode"] == 5
    assert json.loads(result_file.read_text()) == docs
    outputs = [line for line in err.splitlines() if line.startswith("output ")]
    prefix = winner["name"].replace("-", "_")
    assert outputs == [f"output {prefix}_codeVersion=7",
                       f"output {prefix}_codeAssetId={WS.code_version_id(winner['name'], '7')}"]


def test_cli_single_asset_of_another_name_exits_5_with_the_fix(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["code", "register", "--name", "training-code", "--path", str(code), "--version", "1"],
                   capsys)[0] == 0
    result_file = tmp_path / "r.json"
    rc, _, err = run_cli(["--ci", "plain", "code", "register", "--name", "validation-code", "--path", str(code),
                          "--version", "2", "--result-file", str(result_file)], capsys)
    assert rc == 5
    assert "error [AssetNameMismatch]: requested validation-code:2 but Azure ML returned training-code:1" in err
    assert "hint: Register with --name-marker" in err
    assert not [line for line in err.splitlines() if line.startswith("output ")]
    saved = json.loads(result_file.read_text())
    assert (saved["version"], saved["returnedName"], saved["returnedVersion"]) == (None, "training-code", "1")


def test_cli_name_marker_registers_each_name_and_a_rerun_returns_the_same_versions(
    cli_env: FakeWorkspace, code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--output", "json", "code", "register", "--name-marker",
            "--asset", f"training-code={code}", "--asset", f"validation-code={code}", "--version"]
    rc, first, _ = run_cli([*argv, "1"], capsys)
    assert rc == 0
    assert [(d["name"], d["returnedName"], d["version"], d["nameMarker"]) for d in first] == [
        ("training-code", "training-code", "1", True), ("validation-code", "validation-code", "1", True)]
    rc, again, _ = run_cli([*argv, "2"], capsys)
    assert rc == 0
    assert [(d["version"], d["dedup"]) for d in again] == [("1", True), ("1", True)]


# --- evidence survives a failing pointer step -----------------------------------------------------------------


def test_a_failing_pointer_write_keeps_the_registration_evidence_and_names_the_rerun(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.core.exceptions import HttpResponseError

    from cicd_tools.codeassets import publishing

    def refused(*args: Any, **kwargs: Any) -> Any:
        error = HttpResponseError(message="This request is not authorized to perform this operation.")
        error.status_code = 403
        error.error_code = "AuthorizationFailure"
        raise error  # what azure-storage-blob raises when the firewall refuses the pointer read

    monkeypatch.setattr(publishing, "publish_registration", refused)
    monkeypatch.setattr("cicd_tools.cli._clients.container_client", lambda settings: object())
    github_output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(github_output))
    result_file = tmp_path / "result.json"
    rc, doc, err = run_cli(["--output", "json", "--ci", "github", "code", "register", "--name", "training-code",
                            "--path", str(code), "--version", "4242", "--pointer", "--account", "acct",
                            "--result-file", str(result_file)], capsys)
    assert rc == 3
    assert (doc["version"], doc["pointer"]) == ("4242", None)
    assert doc["pointerError"]["exitCode"] == 3
    assert json.loads(result_file.read_text()) == doc
    assert "codeVersion<<" in github_output.read_text() and "\n4242\n" in github_output.read_text()
    assert "training-code:4242 was registered, but its pointer was not published" in err
    assert "cicd-tools pointer write --asset training-code --version 4242" in err


def test_a_result_file_that_cannot_be_written_still_prints_and_outputs_the_registration(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "result.json"

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cicd_tools.support.outpath.os.replace", disk_full)
    rc, doc, err = run_cli(["--output", "json", "--ci", "plain", "code", "register", "--name", "train", "--path",
                            str(code), "--version", "3", "--result-file", str(target)], capsys)
    assert rc == 2
    assert (doc["name"], doc["version"]) == ("train", "3")
    assert "output codeVersion=3" in err
    assert f"error [ResultFileNotWritten]: the registration result could not be written to --result-file {target}" \
        in err
    assert "internal error" not in err and "Traceback" not in err


def test_a_result_file_naming_a_folder_is_refused_before_anything_is_registered(
    cli_env: FakeWorkspace, code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    rc, doc, err = run_cli(["--output", "json", "--ci", "plain", "code", "register", "--name", "train", "--path",
                            str(code), "--version", "3", "--result-file", str(folder)], capsys)
    assert rc == 2 and doc["error"] == "OutputRefused"
    assert f"the result file {folder} is a folder; nothing was written" in err
    assert "output codeVersion" not in err  # nothing was registered
    assert "internal error" not in err and "Traceback" not in err


def test_a_registration_of_another_name_is_never_turned_into_a_pointer() -> None:
    from cicd_tools.codeassets.publishing import pointer_from_registration

    foreign = reg.RegistrationResult(
        name="validation-code", returned_name="training-code", requested_version="2", version="1",
        asset_id=WS.code_version_id("training-code", "1"), content_hash="0" * 64, file_count=1, dedup=True,
        unique=False, code_uri=None)
    with pytest.raises(reg.AssetNameMismatch):
        pointer_from_registration(foreign, WS, {})
