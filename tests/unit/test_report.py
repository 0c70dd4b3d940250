"""The evidence report: schema generated from the model (drift test), atomic writes, strict reading, Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.cli.main import main
from cicd_tools.report.markdown import render_markdown
from cicd_tools.report.model import (
    SCHEMA_PATH,
    AssetEvidence,
    EvidenceReport,
    PointerEvidence,
    StepRecord,
    read_report,
    report_json_schema,
    write_report,
)
from cicd_tools.support.errors import ContractViolation, UsageError


def sample() -> EvidenceReport:
    return EvidenceReport(
        tool="cicd-tools test", startedAtUtc="2026-12-01T00:00:00Z", status="succeeded", exitCode=0,
        steps=[StepRecord(name="register", status="ok", durationSeconds=1.25)],
        assets=[AssetEvidence(name="training-code", requestedVersion="9", version="3", returnedName="training-code",
                              dedup=True, pointer=PointerEvidence(before="2", after="3", historyBlob="h/3.json"))],
    )


def test_the_checked_in_schema_is_the_one_the_model_generates() -> None:
    checked_in = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert checked_in == report_json_schema(), "regenerate: cicd-tools report schema --write " + str(SCHEMA_PATH)


def test_a_report_validates_against_the_checked_in_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(sample().model_dump_json()), schema)
    bad = json.loads(sample().model_dump_json())
    bad["assets"][0]["version"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_writes_are_atomic_and_leave_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a missing folder is created only inside the working directory
    target = tmp_path / "out" / "evidence.json"
    write_report(target, sample())
    first = target.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("cicd_tools.support.outpath.os.replace", broken_replace)
    with pytest.raises(OSError):
        write_report(target, sample().model_copy(update={"status": "failed"}))
    assert target.read_text() == first  # the old report survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["evidence.json"]


def test_reading_refuses_other_files_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        read_report(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ContractViolation, match="not JSON"):
        read_report(tmp_path / "x.json")
    (tmp_path / "v.json").write_text(json.dumps({"schemaVersion": 2}))
    with pytest.raises(ContractViolation, match="schemaVersion 2"):
        read_report(tmp_path / "v.json")
    (tmp_path / "p.json").write_text(json.dumps({"schemaVersion": 1, "tool": "x"}))
    with pytest.raises(ContractViolation, match="startedAtUtc"):
        read_report(tmp_path / "p.json")


def test_markdown_puts_requested_returned_and_pointer_side_by_side() -> None:
    text = render_markdown(sample())
    assert "| training-code | 9 | 3 | – | yes | 2 | 3 | h/3.json | – |" in text
    assert "| register | ✅ ok | 1.2 | – |" in text or "| register | ✅ ok | 1.3 | – |" in text


def test_report_show_renders_a_file_and_exits_5_on_a_foreign_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_report(tmp_path / "e.json", sample())
    assert main(["--ci", "plain", "report", "show", str(tmp_path / "e.json")]) == 0
    assert "Code assets and pointers" in capsys.readouterr().out
    (tmp_path / "other.json").write_text("[]")
    assert main(["--ci", "plain", "report", "show", str(tmp_path / "other.json")]) == 5


def test_an_interruption_outside_the_cicd_error_tree_keeps_exit_130() -> None:
    from cicd_tools.report.model import ErrorInfo

    class Interrupted(BaseException):  # the shape h9 may give it: a BaseException carrying its exit code
        exit_code = 130
        hint = "cleanup has run"

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

    info = ErrorInfo.from_error(Interrupted("received signal SIGTERM"))
    assert (info.type, info.exitCode, info.message, info.hint) == ("Interrupted", 130, "received signal SIGTERM",
                                                                    "cleanup has run")
    assert ErrorInfo.from_error(KeyboardInterrupt()).exitCode == 130
    assert ErrorInfo.from_error(ValueError("bug")).exitCode == 70


def test_free_form_values_in_operation_results_are_coerced_into_valid_evidence() -> None:
    import warnings
    from datetime import UTC, datetime

    import jsonschema

    from cicd_tools.adf.operations import ActivityResult, AdfRunResult
    from cicd_tools.aml.operations import VerifyResult
    from cicd_tools.aml.verify import JobVerdict
    from cicd_tools.flow.evidence import record_adf_run, record_verify
    from cicd_tools.report.model import AdfRunEvidence, VerifyEvidence

    when = datetime(2026, 12, 1, tzinfo=UTC)
    run = AdfRunEvidence(pipeline="p")
    # parameters, activity errors and child runs pass through from Azure as they came (here: datetimes)
    record_adf_run(run, AdfRunResult(
        run_id="42", pipeline="p", factory="f", status="Succeeded", exit_code=0, report={}, run_start=str(when),
        duration_ms=1234, parameters={"when": when},
        activities=(ActivityResult("Train", None, None, None, None, {"at": when}),), child_runs=({"at": when},)))
    verify = VerifyEvidence(adfRunId="42", pointers=["training-code"])
    record_verify(verify, VerifyResult((JobVerdict("j", None, None, None, None, None),), None))
    report = sample().model_copy(update={"adfRuns": [run], "verify": [verify]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a field holds the wrong type at dump time
        doc = json.loads(report.model_dump_json())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert doc["adfRuns"][0]["runId"] == "42" and doc["adfRuns"][0]["durationInMs"] == 1234
    assert doc["adfRuns"][0]["parameters"]["when"].startswith("2026-12-01")
    assert doc["adfRuns"][0]["activities"][0]["error"]["at"].startswith("2026-12-01")
    assert doc["adfRuns"][0]["childRuns"][0]["at"].startswith("2026-12-01")
    assert doc["verify"][0]["ok"] is False and doc["verify"][0]["jobs"] == [
        {"name": "j", "status": None, "codeId": None, "expectedCodeId": None, "codeIdMatches": False,
         "codeHash": None, "expectedHash": None, "hashMatches": None, "ok": False, "note": None}]
