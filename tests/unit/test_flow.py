"""The flow's orchestration with a fake command runner: order, cleanup on failure and on signals, evidence first."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.cli import flow as flow_cmd
from cicd_tools.cli import main as cli
from cicd_tools.cli._base import Outcome
from cicd_tools.flow import Flow, StepNotAvailable
from cicd_tools.report.model import EvidenceReport
from cicd_tools.settings.config import load_config
from cicd_tools.support.errors import ConfigError, Interrupted, RunFailed

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


def asset_doc(name: str, requested: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "requestedVersion": requested, "dedup": requested != version,
            "assetId": f"{WS}/codes/{name}/versions/{version}", "contentHash": "ab" * 32, "error": None}


class FakeCommands:
    """Answers each cicd-tools command as its handler would; ``on`` overrides one command."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.on: dict[str, Callable[[list[str]], Outcome]] = {}

    def __call__(self, argv: list[str]) -> Outcome:
        self.calls.append(argv)
        key = " ".join(argv[:2])
        if key in self.on:
            return self.on[key](argv)
        return getattr(self, key.replace(" ", "_"))(argv)

    def firewall_open(self, argv: list[str]) -> Outcome:
        return Outcome(data={"accountId": "/acct", "ip": "52.151.10.20", "leaseId": "l1", "expiresAt": "2026-12-01",
                             "skipped": None, "ruleAdded": True, "preexisting": False, "reachableAfter": 1.5})

    def firewall_close(self, argv: list[str]) -> Outcome:
        return Outcome(data={"closed": [{"leaseId": "l1", "ip": "52.151.10.20", "ruleRemoved": True,
                                         "nothingToDo": None}]})

    def storage_smoke(self, argv: list[str]) -> Outcome:
        return Outcome(data={"usable": True, "accountUrl": "https://acct", "failure": None,
                             "steps": [{"step": "list", "ok": True, "latencyMs": 3.0}]})

    def code_register(self, argv: list[str]) -> Outcome:
        return Outcome(data=[asset_doc("training-code", "7", "3"), asset_doc("validation-code", "7", "7")])

    def pointer_write(self, argv: list[str]) -> Outcome:
        asset, version = argv[argv.index("--asset") + 1], argv[argv.index("--version") + 1]
        return Outcome(data={"asset": asset, "version": version, "previousVersion": "2", "assetId": "x",
                             "historyBlob": f"code-assets/{asset}/history/t_{version}.json", "verified": True,
                             "pointer": {"version": version}})

    def adf_run(self, argv: list[str]) -> Outcome:
        return Outcome(data={"runId": "run-1", "pipeline": "pl_train_and_validate", "factory": "adf",
                             "status": "Succeeded", "message": "", "runStart": "a", "runEnd": "b",
                             "durationInMs": 1200, "parameters": {"runTag": "ci"}, "armCalls": 4, "childRuns": [],
                             "activities": [{"activityName": "Train", "activityType": "ExecutePipeline",
                                             "status": "Succeeded", "pipelineRunId": "run-1",
                                             "activityRunId": "a1", "error": None, "input": {}, "output": {}}]})

    def aml_verify(self, argv: list[str]) -> Outcome:
        return Outcome(data={"ok": True, "expectedCodeId": "id", "jobs": [
            {"name": "job-1", "status": "Completed", "codeId": "id", "expectedCodeId": "id", "codeIdMatches": True,
             "codeHash": "h", "expectedHash": "h", "hashMatches": True, "ok": True}]})

    def names(self) -> list[str]:
        return [" ".join(c[:2]) for c in self.calls]


def make_flow(fake: FakeCommands, **cli: Any) -> Flow:
    loaded = load_config(cli=cli)
    report = Path(loaded.config.report.path) if loaded.config.report.path else None
    return Flow(loaded, fake, report_path=report, environ={})


def saved(repo: Path) -> EvidenceReport:
    return EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())


def test_steps_run_in_order_and_the_report_holds_every_result(repo: Path) -> None:
    fake = FakeCommands()
    report = make_flow(fake).run()
    assert fake.names() == ["firewall open", "storage smoke", "code register", "pointer write", "pointer write",
                            "adf run", "aml verify", "firewall close"]
    assert [(s.name, s.status) for s in report.steps][-2:] == [("model-mirror", "skipped"), ("firewall-close", "ok")]
    assert [s.status for s in report.steps if s.name != "model-mirror"] == ["ok"] * 7
    assert report.status == "succeeded" and saved(repo) == report
    # the returned version, not the requested one, goes to the pointer
    write = fake.calls[3]
    assert write[write.index("--version") + 1] == "3" and write[write.index("--requested-version") + 1] == "7"
    adf = fake.calls[5]
    assert adf[adf.index("--factory") + 1] == "adf" and "--wait" in adf
    assert adf[adf.index("--param"):adf.index("--param") + 2] == ["--param", "runTag=ci"]
    assert "retries=2" in adf
    # one verify per run, holding each job to the pointer its run named
    assert [v.pointers for v in report.verify] == [["training-code", "validation-code"]]
    verify = fake.calls[6]
    assert verify[verify.index("--pointer") + 1:] == ["training-code", "validation-code"]
    assert report.firewall is not None and report.firewall.ruleRemoved and report.firewall.reachableAfterSeconds == 1.5
    assert report.outputs["adfRunId"] == "run-1" and report.outputs["training_code_pointerVersion"] == "3"


def test_open_and_close_share_the_state_file_and_a_configured_lease_id(repo: Path) -> None:
    fake = FakeCommands()
    make_flow(fake, **{"firewall.lease-id": "job-7", "firewall.state-file": str(repo / "fw.json")}).run()
    for call in (c for c in fake.calls if c[0] == "firewall"):
        assert call[call.index("--lease-id") + 1] == "job-7"
        assert call[call.index("--state-file") + 1] == str(repo / "fw.json")


def test_a_failed_adf_run_still_closes_and_keeps_earlier_evidence(repo: Path) -> None:
    fake = FakeCommands()

    def failing_run(argv: list[str]) -> Outcome:
        # the evidence of earlier steps is on disk before this step's failure is reported
        on_disk = saved(repo)
        assert [a.version for a in on_disk.assets] == ["3", "7"]
        assert all(a.pointer and a.pointer.after for a in on_disk.assets)
        raise RunFailed("pipeline run run-9 Failed: activity Train failed", code="Failed")

    fake.on["adf run"] = failing_run
    with pytest.raises(RunFailed):
        make_flow(fake).run()
    assert fake.names()[-1] == "firewall close"
    report = saved(repo)
    steps = {s.name: s for s in report.steps}
    assert steps["adf-run"].status == "failed" and steps["adf-run"].error is not None
    assert steps["adf-run"].error.exitCode == 4 and steps["adf-run"].error.code == "Failed"
    assert steps["aml-verify"].status == "not-run" and steps["firewall-close"].status == "ok"
    assert report.status == "failed" and report.exitCode == 4


def test_an_adf_run_that_returns_failed_status_is_a_failure_with_its_activity_table(repo: Path) -> None:
    fake = FakeCommands()
    ok_run = fake.adf_run

    def failed(argv: list[str]) -> Outcome:
        data = dict(ok_run(argv).data)  # type: ignore[arg-type]
        data["status"], data["message"] = "Failed", "Operation on target Train failed"
        data["activities"] = [{"activityName": "Train", "activityType": "ExecutePipeline", "status": "Failed",
                               "error": {"errorCode": "2011", "message": "boom", "failureType": "UserError",
                                         "target": "Train"}}]
        return Outcome(data=data, exit_code=4)

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
    fake = FakeCommands()

    def interrupted(argv: list[str]) -> Outcome:
        raise signal_error

    fake.on["adf run"] = interrupted
    with pytest.raises(type(signal_error)):
        make_flow(fake).run()
    assert fake.names()[-1] == "firewall close"
    report = saved(repo)
    assert report.status == "interrupted" and report.exitCode == 130
    assert {s.name: s.status for s in report.steps}["adf-run"] == "interrupted"


def test_a_failing_open_still_runs_close_and_nothing_in_between(repo: Path) -> None:
    fake = FakeCommands()

    def refused(argv: list[str]) -> Outcome:
        raise Interrupted("received signal SIGTERM")

    fake.on["firewall open"] = refused
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    assert fake.names() == ["firewall open", "firewall close"]


def test_a_smoke_failure_reported_by_exit_code_stops_the_flow_with_its_code(repo: Path) -> None:
    fake = FakeCommands()
    fake.on["storage smoke"] = lambda argv: Outcome(
        data={"usable": False, "steps": [{"step": "list", "ok": False, "code": "AuthorizationFailure"}],
              "failure": {"code": "AuthorizationFailure", "fix": "open the firewall"}}, exit_code=3)
    with pytest.raises(Exception) as info:
        make_flow(fake).run()
    assert getattr(info.value, "exit_code", None) == 3
    assert fake.names() == ["firewall open", "storage smoke", "firewall close"]
    report = saved(repo)
    assert report.smoke is not None and report.smoke.failureCode == "AuthorizationFailure"


def test_skipped_steps_are_not_called_and_say_so(repo: Path) -> None:
    fake = FakeCommands()
    loaded = load_config(cli_skip=["firewall-open", "smoke", "aml-verify"])
    report = Flow(loaded, fake, environ={}).run()
    assert fake.names() == ["code register", "pointer write", "pointer write", "adf run"]
    statuses = {s.name: (s.status, s.note) for s in report.steps}
    assert statuses["firewall-close"] == ("skipped", "disabled by configuration")
    assert statuses["smoke"][0] == "skipped"


def test_steps_missing_from_this_build_are_reported_not_available_after_cleanup(repo: Path) -> None:
    fake = FakeCommands()

    def absent(argv: list[str]) -> Outcome:
        raise StepNotAvailable(f"`cicd-tools {argv[0]}` is not available in this build of cicd-tools")

    fake.on["adf run"] = fake.on["aml verify"] = absent
    with pytest.raises(StepNotAvailable) as info:
        make_flow(fake).run()
    assert info.value.exit_code == 2 and "adf-run" in info.value.message
    report = saved(repo)
    assert report.status == "incomplete"
    assert {s.name: s.status for s in report.steps}["adf-run"] == "not-available"
    assert fake.names()[-1] == "firewall close"


def test_a_signal_during_close_is_held_until_the_close_is_done(repo: Path) -> None:
    fake = FakeCommands()
    closed: list[bool] = []
    ok_close = fake.firewall_close

    def close(argv: list[str]) -> Outcome:
        os.kill(os.getpid(), signal.SIGTERM)  # CI cancels again while we clean up
        closed.append(True)
        return ok_close(argv)

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
    fake = FakeCommands()

    def sigterm(argv: list[str]) -> Outcome:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have interrupted the wait")

    fake.on["adf run"] = sigterm
    monkeypatch.setattr(flow_cmd, "cli_invoker", lambda ctx: fake)
    monkeypatch.setattr(flow_cmd, "missing_command", lambda parser, argv: None)  # every command in this test
    assert cli.main(["--ci", "plain", "flow"]) == 130
    assert fake.names()[-1] == "firewall close"
    assert "interrupted" in json.loads((repo / "out" / "evidence.json").read_text())["status"]
    assert "received signal SIGTERM" in capsys.readouterr().err


def test_a_config_that_cannot_finish_is_refused_before_the_firewall_opens(repo: Path) -> None:
    fake = FakeCommands()
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

    fake = FakeCommands()
    ci = RecordingDialect(kind=CiKind.PLAIN, stream=io.StringIO(), environ={})
    loaded = load_config()
    flow = Flow(loaded, fake, ci=ci, report_path=repo / "out" / "evidence.json", environ={})
    ci.sink = flow.record_output
    seen: list[EvidenceReport] = []
    ok_run = fake.adf_run

    def run_then_wait(argv: list[str]) -> Outcome:
        ci.set_output("runId", "run-1")  # what `adf run` does before it waits
        seen.append(saved(repo))
        return ok_run(argv)

    fake.on["adf run"] = run_then_wait
    flow.run()
    assert seen[0].outputs["runId"] == "run-1"
    assert {s.name: s.status for s in seen[0].steps}["adf-run"] == "running"
    assert "output runId=run-1" in ci.stream.getvalue()  # type: ignore[attr-defined]


def test_the_markdown_summary_reaches_the_github_step_summary_even_when_the_flow_fails(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCommands()

    def failing(argv: list[str]) -> Outcome:
        raise RunFailed("pipeline run run-9 Failed")

    fake.on["adf run"] = failing
    summary, outputs = repo / "summary.md", repo / "outputs.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setattr(flow_cmd, "cli_invoker", lambda ctx: fake)
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
    fake = FakeCommands()
    with pytest.raises(ConfigError) as info:
        make_flow(fake, **{"report.path": str(repo / "blocker" / "evidence.json")}).run()
    assert info.value.exit_code == 2 and "could not be written" in info.value.message
    assert fake.names()[0] == "firewall open" and fake.names()[-1] == "firewall close"


def test_outside_ci_a_missing_code_version_is_refused_before_anything_runs(repo: Path) -> None:
    from cicd_tools.support.errors import ConfigError

    (repo / "cicd-tools.toml").write_text(CONFIG.replace('version = "7"\n', ""))
    fake = FakeCommands()
    with pytest.raises(ConfigError, match=r"code\.version"):
        make_flow(fake)
    assert fake.calls == []
    Flow(load_config(), fake, environ={"BUILD_BUILDID": "812"})  # in CI the build id is the requested version


def test_configured_steps_this_build_lacks_stop_the_flow_before_anything_runs(repo: Path) -> None:
    fake = FakeCommands()
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
    fake = FakeCommands()

    def interrupted(argv: list[str]) -> Outcome:
        raise Interrupted("received signal SIGTERM")

    fake.on["pointer write"] = interrupted
    with pytest.raises(Interrupted):
        make_flow(fake).run()
    assert fake.names() == ["firewall open", "storage smoke", "code register", "pointer write", "firewall close"]


def mirror_config(repo: Path) -> None:
    (repo / "cicd-tools.toml").write_text(CONFIG + '[mirror]\nenabled = true\nname = "linear-model"\n')


def test_the_mirror_step_registers_the_runs_checkpoint_and_sets_the_model_outputs(repo: Path) -> None:
    mirror_config(repo)
    fake = FakeCommands()
    fake.on["model mirror"] = lambda argv: Outcome(data={
        "ok": True, "modelName": "linear-model", "modelVersion": "1", "reused": False,
        "modelAssetId": f"{WS}/models/linear-model/versions/1", "sourceRunId": "run-1", "trainingJob": "train-1",
        "codeId": f"{WS}/codes/training-code/versions/3", "contentHash": "cd" * 32, "files": [], "skipped": [],
        "warning": None, "error": None})
    report = make_flow(fake).run()
    call = fake.calls[fake.names().index("model mirror")]
    assert call[call.index("--adf-run-id") + 1] == "run-1" and "--best-effort" in call
    assert fake.names()[-2:] == ["model mirror", "firewall close"]  # after verify, before the rule is closed
    assert report.mirror[0].modelVersion == "1" and report.outputs["modelVersion"] == "1"
    assert {s.name: s.status for s in report.steps}["model-mirror"] == "ok"


def test_a_failing_mirror_is_a_warning_in_the_report_and_the_flow_still_succeeds(repo: Path) -> None:
    mirror_config(repo)
    fake = FakeCommands()
    fake.on["model mirror"] = lambda argv: Outcome(data={
        "ok": False, "modelName": "linear-model", "modelVersion": None, "modelAssetId": None, "reused": False,
        "sourceRunId": "run-1", "trainingJob": "train-1", "codeId": None, "contentHash": None, "files": [],
        "skipped": [], "warning": "model mirror failed (not blocking: --best-effort): registry down",
        "error": {"code": "ServiceUnavailable", "message": "registry down", "exitCode": 3}})
    report = make_flow(fake).run()
    assert report.status == "succeeded" and report.exitCode == 0
    mirrored = saved(repo).mirror[0]
    assert mirrored.ok is False and mirrored.error is not None and mirrored.error.code == "ServiceUnavailable"
    assert mirrored.warning is not None and "registry down" in mirrored.warning
    step = {s.name: s for s in report.steps}["model-mirror"]
    assert step.status == "ok" and step.note is not None and "registry down" in step.note


def test_a_mirror_step_without_a_model_name_is_refused_before_anything_runs(repo: Path) -> None:
    (repo / "cicd-tools.toml").write_text(CONFIG + "[mirror]\nenabled = true\n")
    fake = FakeCommands()
    with pytest.raises(ConfigError) as info:
        make_flow(fake).run()
    assert "mirror.name" in info.value.message and "--model-name" in info.value.message
    assert fake.calls == []
