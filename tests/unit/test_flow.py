"""The flow's orchestration with a fake command runner: order, cleanup on failure and on signals, evidence first."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.operations import ActivityResult, AdfRunResult
from cicd_tools.aml.mirroring import MirrorResult
from cicd_tools.aml.operations import VerifyResult
from cicd_tools.aml.verify import JobVerdict
from cicd_tools.cli import flow as flow_cmd
from cicd_tools.cli import main as cli
from cicd_tools.codeassets.register import AssetOutcome, RegistrationResult
from cicd_tools.flow import Flow, StepNotAvailable
from cicd_tools.flow.readiness import Published
from cicd_tools.pointer.contract import CodeAssetPointer, PublishResult
from cicd_tools.report.model import EvidenceReport
from cicd_tools.settings.config import load_config
from cicd_tools.storage.arm import AccountRef
from cicd_tools.storage.firewall import CloseResult, OpenResult
from cicd_tools.storage.operations import FirewallClosed, FirewallOpened
from cicd_tools.storage.smoke import SmokeResult, StepOutcome
from cicd_tools.support.errors import AzureError, ConfigError, ContractViolation, Interrupted, RunFailed

CONFIG = """
[azure]
subscription-id = "00000000-0000-0000-0000-000000000000"
resource-group = "rg"
workspace = "ws"
factory = "adf"
[storage]
account = "acct"
[code]
version = "7"
[[code.assets]]
name = "training-code"
path = "src/train"
[[code.assets]]
name = "validation-code"
path = "src/validate"
[[adf.pipelines]]
name = "pl_train_and_validate"
parameters = { runTag = "ci", retries = 2 }
[report]
path = "out/evidence.json"
"""
WS = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/" \
     "Microsoft.MachineLearningServices/workspaces/ws"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("train", "validate"):
        (tmp_path / "src" / name).mkdir(parents=True)
    (tmp_path / "cicd-tools.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("CICD_")]:
        monkeypatch.delenv(var)
    return tmp_path


def registered(name: str, requested: str, version: str) -> RegistrationResult:
    return RegistrationResult(name=name, requested_version=requested, version=version,
                              asset_id=f"{WS}/codes/{name}/versions/{version}", content_hash="ab" * 32, file_count=1,
                              dedup=requested != version, unique=False, code_uri=None)


def run_result(status: str = "Succeeded", *, exit_code: int = 0, message: str = "",
               activities: tuple[ActivityResult, ...] | None = None, run_id: str = "run-1",
               parameters: dict[str, Any] | None = None) -> AdfRunResult:
    acts = activities if activities is not None else (
        ActivityResult("Train", "ExecutePipeline", "Succeeded", run_id, "a1", None),)
    return AdfRunResult(run_id=run_id, pipeline="pl_train_and_validate", factory="adf", status=status,
                        exit_code=exit_code, report={}, message=message, run_start="a", run_end="b", duration_ms=1200,
                        parameters={"runTag": "ci"} if parameters is None else parameters, activities=acts)


class FakeOperations:
    """Answers each operation as the real one would; ``on`` overrides one (keyed like the command it backs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.on: dict[str, Callable[..., Any]] = {}
        self.declared: set[str] | None = None  # the published pipeline's parameters (None: unreadable)
        self.found = Published(factory_found=True, workspace_found=True)  # what the reads before the flow find
        self.readiness: list[Any] = []
        self.registered = [registered("training-code", "7", "3"), registered("validation-code", "7", "7")]

    def _call(self, name: str, request: Any, default: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, request))
        return self.on.get(name, default)(request, *args, **kwargs)

    def firewall_open(self, request: Any, *, on_ip: Any, on_rollback: Any) -> FirewallOpened:
        def ok(request: Any, **_: Any) -> FirewallOpened:
            result = OpenResult("/acct", "52.151.10.20", request.lease_id, "2026-12-01", rule_added=True,
                                reachable_after=1.5)
            return FirewallOpened(AccountRef("s", "rg", "acct"), request.lease_id, "52.151.10.20", ("echo",), result,
                                  request.state.path)
        return self._call("firewall open", request, ok, on_ip=on_ip, on_rollback=on_rollback)  # type: ignore[no-any-return]

    def firewall_close(self, request: Any, *, on_guard_stopped: Any) -> FirewallClosed:
        def ok(request: Any) -> FirewallClosed:
            on_guard_stopped(4242)  # open's guard process, stopped before the rule is removed
            return FirewallClosed(results=(CloseResult("/acct", "l1", "52.151.10.20", True, True),))
        return self._call("firewall close", request, ok)  # type: ignore[no-any-return]

    def firewall_hand_off(self, request: Any, lease_id: str) -> list[tuple[str, bool]]:
        def ok(request: Any, lease_id: str) -> list[tuple[str, bool]]:
            return [("rule 52.151.10.20 on acct handed to the release watcher to remove", False)]
        return self._call("firewall hand-off", request, ok, lease_id)  # type: ignore[no-any-return]

    def storage_smoke(self, settings: Any, denied_budget: float) -> SmokeResult:
        def ok(settings: Any, denied_budget: float) -> SmokeResult:
            return SmokeResult("https://acct", "ml-globals", "probe", True, (StepOutcome("list", True, 3.0),))
        return self._call("storage smoke", settings, ok, denied_budget)  # type: ignore[no-any-return]

    def code_register(self, request: Any, *, on_done: Any) -> list[AssetOutcome]:
        def ok(request: Any, on_done: Any) -> list[AssetOutcome]:
            outcomes = [AssetOutcome(spec, result=result) for spec, result in zip(request.specs, self.registered,
                                                                                   strict=True)]
            for outcome in outcomes:
                on_done(outcome)
            return outcomes
        return self._call("code register", request, ok, on_done=on_done)  # type: ignore[no-any-return]

    def pointer_write(self, request: Any, storage: Any) -> PublishResult:
        def ok(request: Any, storage: Any) -> PublishResult:
            pointer = CodeAssetPointer(assetName=request.asset, version=request.version, assetId=f"{WS}/codes/"
                                       f"{request.asset}/versions/{request.version}", workspaceName="ws",
                                       resourceGroup="rg", subscriptionId="00000000-0000-0000-0000-000000000000",
                                       registeredAtUtc="2026-12-01T00:00:00Z")
            return PublishResult(pointer, "etag", f"code-assets/{request.asset}/history/t_{request.version}.json", 1,
                                 "2", True)
        return self._call("pointer write", request, ok, storage)  # type: ignore[no-any-return]

    def adf_pipeline_parameters(self, factory: Any, arm_endpoint: str, pipeline: str) -> set[str] | None:
        return self.declared

    def published(self, request: Any) -> Published:
        self.readiness.append(request)  # not in ``calls``: the reads change nothing
        return self.found

    def adf_run(self, request: Any, arm_endpoint: str, *, on_started: Any, on_status: Any) -> AdfRunResult:
        def ok(request: Any, arm_endpoint: str, *, on_started: Any, on_status: Any) -> AdfRunResult:
            on_started("run-1")
            return run_result(parameters=dict(request.parameters))  # the run echoes the parameters it got
        return self._call("adf run", request, ok, arm_endpoint, on_started=on_started,  # type: ignore[no-any-return]
                          on_status=on_status)

    def aml_verify(self, request: Any, storage: Any) -> VerifyResult:
        def ok(request: Any, storage: Any) -> VerifyResult:
            verdict = JobVerdict("job-1", "Completed", "id", "id", "h", "h")
            return VerifyResult((verdict,), "id")
        return self._call("aml verify", request, ok, storage)  # type: ignore[no-any-return]

    def model_mirror(self, request: Any, result: Any) -> Any:
        return self._call("model mirror", request, lambda request, result: result, result)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def request(self, name: str, index: int = 0) -> Any:
        return [r for n, r in self.calls if n == name][index]


def make_flow(fake: FakeOperations, **cli: Any) -> Flow:
    loaded = load_config(cli=cli)
    report = Path(loaded.config.report.path) if loaded.config.report.path else None
    return Flow(loaded, fake, report_path=report, environ={})


def closed_after_data_plane(fake: FakeOperations) -> bool:
    """The rule was closed, and only after the last step that used the agent's data-plane access (the pointers,
    or the model mirror's upload): the close may run beside the ADF wait, so its place among the others varies."""
    names = fake.names()
    used = [i for i, n in enumerate(names) if n in ("firewall open", "storage smoke", "code register",
                                                    "pointer write", "model mirror")]
    return names.count("firewall close") == 1 and names.index("firewall close") > max(used)


def saved(repo: Path) -> EvidenceReport:
    return EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())


def test_steps_run_in_order_and_the_report_holds_every_result(repo: Path) -> None:
    fake = FakeOperations()
    report = make_flow(fake).run()
    assert [n for n in fake.names() if n != "firewall close"] == [
        "firewall open", "storage smoke", "code register", "pointer write", "pointer write", "adf run", "aml verify"]
    assert closed_after_data_plane(fake)  # right after the pointers, beside the ADF wait (issue 23)
    assert {(s.name, s.status) for s in report.steps} >= {("model-mirror", "skipped"), ("firewall-close", "ok")}
    assert [s.status for s in report.steps if s.name != "model-mirror"] == ["ok"] * 7
    assert report.status == "succeeded" and saved(repo) == report
    # the returned version, not the requested one, goes to the pointer
    write = fake.request("pointer write")
    assert write.version == "3" and write.requested_version == "7"
    adf = fake.request("adf run")
    assert adf.factory.name == "adf" and adf.wait
    assert adf.parameters == {"runTag": "ci", "retries": 2}
    # one verify per run, holding each job to the pointer its run named
    assert [v.pointers for v in report.verify] == [["training-code", "validation-code"]]
    assert fake.request("aml verify").pointers == ("training-code", "validation-code")
    assert report.firewall is not None and report.firewall.ruleRemoved and report.firewall.reachableAfterSeconds == 1.5
    assert report.outputs["adfRunId"] == "run-1" and report.outputs["training_code_pointerVersion"] == "3"
    assert report.outputs["guardStopped"] == "true" and report.outputs["agentIp"] == "52.151.10.20"


def test_open_and_close_share_the_state_file_and_a_configured_lease_id(repo: Path) -> None:
    fake = FakeOperations()
    make_flow(fake, **{"firewall.lease-id": "job-7", "firewall.state-file": str(repo / "fw.json")}).run()
    opened, closed = fake.request("firewall open"), fake.request("firewall close")
    assert opened.lease_id == closed.lease_id == "job-7"
    assert opened.state.path == closed.state.path == repo / "fw.json"


def test_a_failed_adf_run_still_closes_and_keeps_earlier_evidence(repo: Path) -> None:
    fake = FakeOperations()

    def failing_run(request: Any, *args: Any, **kwargs: Any) -> AdfRunResult:
        # the evidence of earlier steps is on disk before this step's failure is reported
        on_disk = saved(repo)
        assert [a.version for a in on_disk.assets] == ["3", "7"]
        assert all(a.pointer and a.pointer.after for a in on_disk.assets)
        raise RunFailed("pipeline run run-9 Failed: activity Train failed", code="Failed")

    fake.on["adf run"] = failing_run
    with pytest.raises(RunFailed):
        make_flow(fake).run()
    assert closed_after_data_plane(fake)
    report = saved(repo)
    steps = {s.name: s for s in report.steps}
    assert steps["adf-run"].status == "failed" and steps["adf-run"].error is not None
    assert steps["adf-run"].error.exitCode == 4 and steps["adf-run"].error.code == "Failed"
    assert steps["aml-verify"].status == "not-run" and steps["firewall-close"].status == "ok"
    assert report.status == "failed" and report.exitCode == 4


def test_an_adf_run_that_returns_failed_status_is_a_failure_with_its_activity_table(repo: Path) -> None:
    fake = FakeOperations()

    def failed(request: Any, *args: Any, **kwargs: Any) -> AdfRunResult:
        error = {"errorCode": "2011", "message": "boom", "failureType": "UserError", "target": "Train"}
        return run_result("Failed", exit_code=4, message="Operation on target Train failed",
                          activities=(ActivityResult("Train", "ExecutePipeline", "Failed", None, None, error),))

    fake.on["adf run"] = failed
    with pytest.raises(Exception) as info:
        make_flow(fake).run()
    assert getattr(info.value, "exit_code", None) == 4
    run = saved(repo).adfRuns[0]
    assert run.status == "Failed" and run.activities[0].error == {
        "errorCode": "2011", "message": "boom", "failureType": "UserError", "target": "Train"}


@pytest.mark.parametrize("signal_error", [Interrupted("received signal SIGTERM"), KeyboardInterrupt()])
def test_an_interruption_while_waiting_closes_the_rule_and_reports_interrupted(
    repo: Path, signal_error: BaseException
) -> None:
    fake = FakeOperations()

    def interrupted(*args: Any, **kwargs: Any) -> AdfRunResult:
        raise signal_error

    fake.on["adf run"] = interrupted
    with pytest.raises(type(signal_error)):
        make_flow(fake).run()
    assert closed_after_data_plane(fake)
    report = saved(repo)
    assert report.status == "interrupted" and report.exitCode == 130
    assert {s.name: s.status for s in report.steps}["adf-run"] == "interrupted"


def test_a_cancelled_flow_closes_without_the_watch_and_hands_a_held_close_to_the_release_watcher(
    repo: Path,
) -> None:
    """Issue 18: exit within 2 s of a signal. The close of a cancelled flow leaves its watch to the detached
    release watcher (``watch=False``); a close still held (a slow PATCH) after HANDOFF_AFTER is handed over whole,
    and the flow ends without waiting for it."""
    import threading

    fake = FakeOperations()
    fake.on["code register"] = lambda *a, **k: (_ for _ in ()).throw(Interrupted("received signal SIGTERM"))
    release = threading.Event()

    def held(request: Any, **_: Any) -> FirewallClosed:
        release.wait(30)  # the PATCH does not answer
        return FirewallClosed()

    fake.on["firewall close"] = held
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    assert not release.is_set()  # handed over while the close was still held, not after it
    release.set()
    assert fake.request("firewall close").watch is False
    assert fake.names()[-2:] == ["firewall close", "firewall hand-off"]
    report = saved(repo)
    close = {s.name: s for s in report.steps}["firewall-close"]
    assert close.status == "interrupted" and close.note and "52.151.10.20" in close.note
    assert report.firewall is not None and report.firewall.closeNote == close.note
    assert report.status == "interrupted" and report.exitCode == 130


def test_a_cancelled_flow_whose_close_had_removed_the_rule_hands_only_the_watch_over_and_the_close_stays_ok(
    repo: Path,
) -> None:
    import threading

    fake = FakeOperations()
    fake.on["adf run"] = lambda *a, **k: (_ for _ in ()).throw(Interrupted("received signal SIGTERM"))
    release = threading.Event()
    fake.on["firewall close"] = lambda request, **_: release.wait(30) and FirewallClosed()  # still watching
    fake.on["firewall hand-off"] = lambda request, lease_id: [("rule 52.151.10.20 on acct removed, the release"
                                                               " watcher keeps it removed", True)]
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    release.set()
    report = saved(repo)
    close = {s.name: s for s in report.steps}["firewall-close"]
    assert close.status == "ok" and close.error is None and close.note and "keeps it removed" in close.note
    assert report.firewall is not None and report.firewall.closed
    assert report.status == "interrupted" and {s.name: s.status for s in report.steps}["adf-run"] == "interrupted"


def test_a_flow_that_was_not_cancelled_waits_for_its_close_and_its_watch(repo: Path) -> None:
    fake = FakeOperations()
    make_flow(fake).run()
    assert fake.request("firewall close").watch is True and "firewall hand-off" not in fake.names()


def test_a_failing_open_still_runs_close_and_nothing_in_between(repo: Path) -> None:
    fake = FakeOperations()

    def refused(*args: Any, **kwargs: Any) -> FirewallOpened:
        raise Interrupted("received signal SIGTERM")

    fake.on["firewall open"] = refused
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    assert fake.names() == ["firewall open", "firewall close"]


def test_a_smoke_failure_reported_by_exit_code_stops_the_flow_with_its_code(repo: Path) -> None:
    fake = FakeOperations()
    fake.on["storage smoke"] = lambda settings, budget: SmokeResult(
        "https://acct", "ml-globals", "probe", False,
        (StepOutcome("list", False, code="AuthorizationFailure", fix="open the firewall"),))
    with pytest.raises(Exception) as info:
        make_flow(fake).run()
    assert getattr(info.value, "exit_code", None) == 3
    assert fake.names() == ["firewall open", "storage smoke", "firewall close"]
    report = saved(repo)
    assert report.smoke is not None and report.smoke.failureCode == "AuthorizationFailure"


def test_skipped_steps_are_not_called_and_say_so(repo: Path) -> None:
    fake = FakeOperations()
    loaded = load_config(cli_skip=["firewall-open", "smoke", "aml-verify"])
    report = Flow(loaded, fake, environ={}).run()
    assert fake.names() == ["code register", "pointer write", "pointer write", "adf run"]
    statuses = {s.name: (s.status, s.note) for s in report.steps}
    assert statuses["firewall-close"] == ("skipped", "disabled by configuration")
    assert statuses["smoke"][0] == "skipped"


def test_steps_missing_from_this_build_are_reported_not_available_after_cleanup(repo: Path) -> None:
    fake = FakeOperations()

    def absent(request: Any, *args: Any, **kwargs: Any) -> Any:
        raise StepNotAvailable("this operation is not available in this build of cicd-tools")

    fake.on["adf run"] = fake.on["aml verify"] = absent
    with pytest.raises(StepNotAvailable) as info:
        make_flow(fake).run()
    assert info.value.exit_code == 2 and "adf-run" in info.value.message
    report = saved(repo)
    assert report.status == "incomplete"
    assert {s.name: s.status for s in report.steps}["adf-run"] == "not-available"
    assert closed_after_data_plane(fake)


def test_a_signal_during_close_is_held_until_the_close_is_done(repo: Path) -> None:
    fake = FakeOperations()
    closed: list[bool] = []

    def close(request: Any) -> FirewallClosed:
        os.kill(os.getpid(), signal.SIGTERM)  # CI cancels again while we clean up
        closed.append(True)
        return FirewallClosed(results=(CloseResult("/acct", "l1", "52.151.10.20", True, True),))

    fake.on["firewall close"] = close
    previous = signal.signal(signal.SIGTERM, cli._raise_interrupted)
    try:
        with pytest.raises(Interrupted):
            make_flow(fake).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert closed == [True]
    assert saved(repo).firewall is not None and saved(repo).firewall.closed  # type: ignore[union-attr]


def test_sigterm_through_the_cli_exits_130_after_closing(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeOperations()

    def sigterm(*args: Any, **kwargs: Any) -> AdfRunResult:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have interrupted the wait")

    fake.on["adf run"] = sigterm
    monkeypatch.setattr(flow_cmd, "operations", lambda: fake)
    monkeypatch.setattr(flow_cmd, "missing_command", lambda parser, argv: None)  # every command in this test
    assert cli.main(["--ci", "plain", "flow"]) == 130
    assert closed_after_data_plane(fake)
    assert "interrupted" in json.loads((repo / "out" / "evidence.json").read_text())["status"]
    assert "received signal SIGTERM" in capsys.readouterr().err


def test_a_config_that_cannot_finish_is_refused_before_the_firewall_opens(repo: Path) -> None:
    fake = FakeOperations()
    (repo / "cicd-tools.toml").write_text(CONFIG.replace('factory = "adf"\n', ""))
    with pytest.raises(Exception) as info:
        make_flow(fake)
    assert "azure.factory" in str(info.value) and "CICD_FACTORY" in str(info.value)
    assert fake.calls == []


def test_missing_command_names_the_absent_subcommand() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    adf = sub.add_parser("adf").add_subparsers()
    adf.add_parser("lint")
    assert flow_cmd.missing_command(parser, ["adf", "run", "--wait"]) == "adf run"
    assert flow_cmd.missing_command(parser, ["aml", "verify"]) == "aml"
    assert flow_cmd.missing_command(parser, ["adf", "lint", "x"]) is None


def test_an_output_set_before_a_wait_is_on_disk_while_the_step_is_still_running(repo: Path) -> None:
    import io

    from cicd_tools.ci import CiKind
    from cicd_tools.flow import RecordingDialect

    fake = FakeOperations()
    ci = RecordingDialect(kind=CiKind.PLAIN, stream=io.StringIO(), environ={})
    loaded = load_config()
    flow = Flow(loaded, fake, ci=ci, report_path=repo / "out" / "evidence.json", environ={})
    ci.sink = flow.record_output
    seen: list[EvidenceReport] = []

    def run_then_wait(request: Any, arm_endpoint: str, *, on_started: Any, on_status: Any) -> AdfRunResult:
        on_started("run-1")  # what `adf run` does before it waits
        seen.append(saved(repo))
        return run_result()

    fake.on["adf run"] = run_then_wait
    flow.run()
    assert seen[0].outputs["adfRunId"] == "run-1" and seen[0].adfRuns[0].runId == "run-1"
    assert {s.name: s.status for s in seen[0].steps}["adf-run"] == "running"
    assert "output adfRunId=run-1" in ci.stream.getvalue()  # type: ignore[attr-defined]


def test_the_markdown_summary_reaches_the_github_step_summary_even_when_the_flow_fails(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeOperations()

    def failing(*args: Any, **kwargs: Any) -> AdfRunResult:
        raise RunFailed("pipeline run run-9 Failed")

    fake.on["adf run"] = failing
    summary, outputs = repo / "summary.md", repo / "outputs.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setattr(flow_cmd, "operations", lambda: fake)
    monkeypatch.setattr(flow_cmd, "missing_command", lambda parser, argv: None)  # every command in this test
    assert cli.main(["--ci", "github", "flow"]) == 4
    text = summary.read_text()
    assert "## cicd-tools flow: failed (exit 4)" in text and "| training-code | 7 | 3 |" in text
    from cicd_tools.ci import parse_github_output_file

    written = parse_github_output_file(outputs.read_text())
    assert written["training_code_pointerVersion"] == "3" and written["evidenceReport"].endswith("evidence.json")
    assert "::error title=RunFailed::pipeline run run-9 Failed" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_does_not_stop_cleanup_and_ends_with_exit_2(repo: Path) -> None:
    from cicd_tools.support.errors import ConfigError

    (repo / "blocker").write_text("a file where the report folder should be")
    fake = FakeOperations()
    with pytest.raises(ConfigError) as info:
        make_flow(fake, **{"report.path": str(repo / "blocker" / "evidence.json")}).run()
    assert info.value.exit_code == 2 and "could not be written" in info.value.message
    assert fake.names()[0] == "firewall open" and closed_after_data_plane(fake)


def test_outside_ci_a_missing_code_version_is_refused_before_anything_runs(repo: Path) -> None:
    from cicd_tools.support.errors import ConfigError

    (repo / "cicd-tools.toml").write_text(CONFIG.replace('version = "7"\n', ""))
    fake = FakeOperations()
    with pytest.raises(ConfigError, match=r"code\.version"):
        make_flow(fake)
    assert fake.calls == []
    Flow(load_config(), fake, environ={"BUILD_BUILDID": "812"})  # in CI the build id is the requested version


def test_configured_steps_this_build_lacks_stop_the_flow_before_anything_runs(repo: Path) -> None:
    fake = FakeOperations()
    loaded = load_config()
    flow = Flow(loaded, fake, report_path=repo / "out" / "evidence.json", environ={},
                available=lambda argv: argv[0] not in ("adf", "aml"))
    with pytest.raises(StepNotAvailable) as info:
        flow.run()
    assert fake.calls == [] and info.value.exit_code == 2
    assert "--skip adf-run --skip aml-verify" in info.value.hint
    statuses = {s.name: s.status for s in saved(repo).steps}
    assert statuses["adf-run"] == statuses["aml-verify"] == "not-available" and statuses["register"] == "not-run"
    assert saved(repo).status == "incomplete"


def test_an_interruption_during_the_first_pointer_publishes_no_more(repo: Path) -> None:
    fake = FakeOperations()

    def interrupted(*args: Any, **kwargs: Any) -> PublishResult:
        raise Interrupted("received signal SIGTERM")

    fake.on["pointer write"] = interrupted
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    assert fake.names() == ["firewall open", "storage smoke", "code register", "pointer write", "firewall close"]


def mirror_config(repo: Path) -> None:
    (repo / "cicd-tools.toml").write_text(CONFIG + '[mirror]\nenabled = true\nname = "linear-model"\n')


def test_the_mirror_step_registers_the_runs_checkpoint_and_sets_the_model_outputs(repo: Path) -> None:
    mirror_config(repo)
    fake = FakeOperations()

    def mirrored(request: Any, result: MirrorResult) -> MirrorResult:
        result.ok, result.model_version, result.reused = True, "1", False
        result.model_asset_id = f"{WS}/models/linear-model/versions/1"
        result.source_run_id = result.training_job = "train-1"
        result.code_id, result.content_hash = f"{WS}/codes/training-code/versions/3", "cd" * 32
        return result

    fake.on["model mirror"] = mirrored
    report = make_flow(fake).run()
    call = fake.request("model mirror")
    assert call.adf_run_id == "run-1" and call.name == "linear-model"
    # the mirror uploads from the agent: the rule stays until it is done, so the close runs last (not early)
    assert fake.names()[-2:] == ["model mirror", "firewall close"]
    assert report.mirror[0].modelVersion == "1" and report.outputs["modelVersion"] == "1"
    assert {s.name: s.status for s in report.steps}["model-mirror"] == "ok"


def test_a_failing_mirror_is_a_warning_in_the_report_and_the_flow_still_succeeds(repo: Path) -> None:
    mirror_config(repo)
    fake = FakeOperations()

    def registry_down(request: Any, result: MirrorResult) -> MirrorResult:
        result.training_job = "train-1"
        raise AzureError("registry down", code="ServiceUnavailable")

    fake.on["model mirror"] = registry_down
    report = make_flow(fake).run()
    assert report.status == "succeeded" and report.exitCode == 0
    mirrored = saved(repo).mirror[0]
    assert mirrored.ok is False and mirrored.error is not None and mirrored.error.code == "ServiceUnavailable"
    assert mirrored.warning is not None and "registry down" in mirrored.warning
    step = {s.name: s for s in report.steps}["model-mirror"]
    assert step.status == "ok" and step.note is not None and "registry down" in step.note


def test_a_mirror_step_without_a_model_name_is_refused_before_anything_runs(repo: Path) -> None:
    (repo / "cicd-tools.toml").write_text(CONFIG + "[mirror]\nenabled = true\n")
    fake = FakeOperations()
    with pytest.raises(ConfigError) as info:
        make_flow(fake).run()
    assert "mirror.name" in info.value.message and "--model-name" in info.value.message
    assert fake.calls == []


# --- issue 18: a green flow means its own version ran -------------------------------------------------------


def test_the_run_is_pinned_to_the_ids_this_flow_registered_when_the_pipeline_declares_them(repo: Path) -> None:
    fake = FakeOperations()
    fake.declared = {"runTag", "retries", "expectedCodeIds"}
    report = make_flow(fake).run()
    expected = {"training-code": f"{WS}/codes/training-code/versions/3",
                "validation-code": f"{WS}/codes/validation-code/versions/7"}
    assert fake.request("adf run").parameters == {"runTag": "ci", "retries": 2, "expectedCodeIds": expected}
    assert report.adfRuns[0].parameters["expectedCodeIds"] == expected


@pytest.mark.parametrize("declared", [None, {"runTag", "retries"}], ids=["unreadable", "older-pipeline"])
def test_a_pipeline_without_the_parameter_runs_as_before(repo: Path, declared: set[str] | None) -> None:
    fake = FakeOperations()
    fake.declared = declared
    make_flow(fake).run()
    assert fake.request("adf run").parameters == {"runTag": "ci", "retries": 2}


def test_verify_holds_each_job_to_this_flows_own_registration(repo: Path) -> None:
    fake = FakeOperations()
    make_flow(fake).run()
    assert fake.request("aml verify").expected_code_ids == {
        "training-code": f"{WS}/codes/training-code/versions/3",
        "validation-code": f"{WS}/codes/validation-code/versions/7"}


def test_jobs_that_ran_a_concurrent_version_fail_the_flow_naming_it_and_the_moved_pointer(repo: Path) -> None:
    fake = FakeOperations()
    ours, theirs = f"{WS}/codes/training-code/versions/3", f"{WS}/codes/training-code/versions/4"

    def concurrent(request: Any, storage: Any) -> VerifyResult:
        # another flow published version 4 while ours ran: the factory read it, the job ran it
        verdict = JobVerdict("job-1", "Completed", theirs, request.expected_code_ids["training-code"], None, None,
                             note=f"the pointer moved to {theirs} meanwhile")
        return VerifyResult((verdict,), ours, {"training-code": theirs})

    fake.on["aml verify"] = concurrent
    with pytest.raises(ContractViolation) as info:
        make_flow(fake).run()
    assert info.value.exit_code == 5
    assert "ran training-code:4, not training-code:3" in info.value.message
    assert "pointer training-code moved to training-code:4 meanwhile" in info.value.message
    verified = saved(repo).verify[0]
    assert verified.ok is False and verified.pointerMoved == {"training-code": theirs}
    assert verified.jobs[0].codeIdMatches is False and "moved to" in str(verified.jobs[0].note)
    assert closed_after_data_plane(fake) and saved(repo).exitCode == 5


def test_a_moved_pointer_is_reported_even_when_the_jobs_ran_our_version(repo: Path) -> None:
    fake = FakeOperations()
    ours, theirs = f"{WS}/codes/training-code/versions/3", f"{WS}/codes/training-code/versions/4"
    fake.on["aml verify"] = lambda request, storage: VerifyResult(
        (JobVerdict("job-1", "Completed", ours, ours, None, None),), ours, {"training-code": theirs})
    report = make_flow(fake).run()
    assert report.status == "succeeded" and report.verify[0].pointerMoved == {"training-code": theirs}


def test_each_registration_is_on_record_the_moment_it_lands_even_when_a_signal_follows(repo: Path) -> None:
    fake = FakeOperations()
    on_disk: list[EvidenceReport] = []

    def first_then_sigterm(request: Any, *, on_done: Any) -> list[AssetOutcome]:
        on_done(AssetOutcome(request.specs[0], result=fake.registered[0]))
        on_disk.append(saved(repo))
        raise Interrupted("received signal SIGTERM")  # while the second asset still uploads

    fake.on["code register"] = first_then_sigterm
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    # on disk before the signal was handled, and still there after cleanup
    for report in (on_disk[0], saved(repo)):
        training = report.assets[0]
        assert (training.name, training.version, training.assetId) == (
            "training-code", "3", f"{WS}/codes/training-code/versions/3")
        assert report.outputs["training_code_codeVersion"] == "3"
    assert saved(repo).status == "interrupted" and fake.names()[-1] == "firewall close"
    # the one without an answer is named with the version it asked for: Azure ML may still create it
    validation = saved(repo).assets[1]
    assert (validation.name, validation.version, validation.requestedVersion) == ("validation-code", None, "7")
    assert validation.error is not None and validation.error.exitCode == 130
    assert "no answer from Azure ML for validation-code:7" in validation.error.message


def test_the_firewall_section_says_what_the_rollback_removed_after_a_signal_during_propagation(repo: Path) -> None:
    from cicd_tools.storage.firewall import RollbackReport

    fake = FakeOperations()

    def sigterm_while_polling(request: Any, *, on_ip: Any, on_rollback: Any) -> FirewallOpened:
        on_ip("52.151.10.20")
        on_rollback(RollbackReport("/acct", request.lease_id, "52.151.10.20", rule_added=True, lease_removed=True,
                                   rule_removed=True, note="rollback: removed lease and rule 52.151.10.20"))
        raise Interrupted("received signal SIGTERM")

    fake.on["firewall open"] = sigterm_while_polling
    # the close that follows finds nothing left: the rollback removed it
    fake.on["firewall close"] = lambda request: FirewallClosed(results=(CloseResult(
        "/acct", "l1", None, False, False, nothing_to_do="no lease l1 and no rule of ours on acct"),))
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    fw = saved(repo).firewall
    assert fw is not None
    assert (fw.ip, fw.ruleAdded, fw.ruleRemoved, fw.opened) == ("52.151.10.20", True, True, False)
    assert fw.rollbackNote is not None and "52.151.10.20" in fw.rollbackNote
    assert fw.closeNote is not None and fw.closeNote.startswith("the rollback of the open already removed")


# --- the rule closes when the data plane is done (issue 23) ------------------------------------------------------


def test_the_rule_closes_while_the_adf_run_is_still_waiting(repo: Path) -> None:
    import threading

    fake = FakeOperations()
    close_called = threading.Event()
    default_close = fake.firewall_close

    def close(request: Any, *, on_guard_stopped: Any) -> FirewallClosed:
        result = default_close(request, on_guard_stopped=on_guard_stopped)
        close_called.set()
        return result

    def run(request: Any, arm_endpoint: str, *, on_started: Any, on_status: Any) -> AdfRunResult:
        on_started("run-1")
        # the run is still going when the rule is removed: the close does not wait for it
        assert close_called.wait(10), "the firewall close did not start while the ADF run waited"
        return run_result()

    fake.firewall_close = close  # type: ignore[method-assign]
    fake.on["adf run"] = run
    report = make_flow(fake).run()
    assert report.status == "succeeded"
    steps = {s.name: s for s in report.steps}
    # the evidence says when the rule went: its close started before the ADF step had finished
    assert steps["firewall-close"].status == "ok" and steps["firewall-close"].startedAtUtc is not None
    assert report.firewall is not None and report.firewall.ruleRemoved is True


def test_a_failing_early_close_fails_the_flow_after_the_run_and_verify(repo: Path) -> None:
    fake = FakeOperations()

    def refused(request: Any) -> FirewallClosed:
        raise AzureError("the account refused the PATCH", code="AuthorizationFailed")

    fake.on["firewall close"] = refused
    with pytest.raises(AzureError):
        make_flow(fake).run()
    assert "adf run" in fake.names() and "aml verify" in fake.names()  # the run's evidence is still gathered
    steps = {s.name: s for s in saved(repo).steps}
    assert steps["firewall-close"].status == "failed" and steps["aml-verify"].status == "ok"
    assert saved(repo).exitCode == 3
