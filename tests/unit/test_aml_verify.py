"""`aml verify`'s judgement: the pointer record in effect at a job's creation, codeId / status / hash verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.aml.verify import evidence, judge_job, published_at
from cicd_tools.cli.main import main
from cicd_tools.pointer.model import CodeAssetPointer

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def pointer(version: str, published: str) -> CodeAssetPointer:
    return CodeAssetPointer(assetName="training-code", version=version,
                            assetId=f"{WS}/codes/training-code/versions/{version}", publishedAtUtc=published)


HISTORY = [pointer("3", "2026-01-02T10:00:00.000000Z"), pointer("1", "2026-01-01T09:00:00.000000Z"),
           pointer("2", "2026-01-01T18:30:00.500000Z")]


@pytest.mark.parametrize(("created", "version"), [
    ("2026-01-01T12:00:00.1234567Z", "1"),  # after 1, before 2 (the service writes 7 fraction digits)
    ("2026-01-01T18:30:00.500000Z", "2"),  # published in the same microsecond: in effect
    ("2026-01-03T00:00:00+00:00", "3"),
    (None, "3"),  # no creation time: the newest record
])
def test_the_expected_id_is_the_pointer_published_at_or_before_the_job(created: str | None, version: str) -> None:
    record = published_at(HISTORY, created)
    assert record is not None and record.version == version


def test_a_job_older_than_every_publication_has_no_expected_id() -> None:
    assert published_at(HISTORY, "2025-12-31T23:59:59Z") is None


def job(code_version: str, status: str = "Completed") -> dict[str, Any]:
    return {"name": "train-1", "properties": {"status": status, "codeId": f"{WS}/codes/training-code/versions/"
                                              f"{code_version}"}, "systemData": {"createdAt": "2026-01-01T12:00Z"}}


def registered(name: str, version: str) -> str:
    return {"1": "aa" * 32, "2": "bb" * 32}[version]


def test_matching_id_completed_and_matching_hash_is_ok() -> None:
    verdict = judge_job(job("1"), expected_code_id=f"{WS}/codes/training-code/versions/1", code_hash="AA" * 32,
                        registered_hash=registered)
    assert (verdict.code_id_matches, verdict.hash_matches, verdict.ok) == (True, True, True)
    doc = evidence([verdict], verdict.expected_code_id)
    assert doc["ok"] is True
    assert set(doc["jobs"][0]) >= {"name", "status", "codeId", "expectedCodeId", "codeIdMatches", "codeHash",
                                   "expectedHash", "hashMatches", "ok"}


@pytest.mark.parametrize(("version", "status", "code_hash", "why"), [
    ("2", "Completed", None, "codeId"),
    ("1", "Failed", None, "status"),
    ("1", "Completed", "cc" * 32, "hash"),
])
def test_a_mismatch_or_an_incomplete_job_is_not_ok(version: str, status: str, code_hash: str | None, why: str) -> None:
    verdict = judge_job(job(version, status), expected_code_id=f"{WS}/codes/training-code/versions/1",
                        code_hash=code_hash, registered_hash=registered)
    assert verdict.ok is False
    assert (verdict.code_id_matches is False) == (why == "codeId")
    assert (verdict.hash_matches is False) == (why == "hash")


def test_no_hash_evidence_leaves_hash_matches_null_and_does_not_fail() -> None:
    verdict = judge_job(job("1"), expected_code_id=f"{WS}/codes/training-code/versions/1", code_hash=None,
                        registered_hash=registered)
    assert verdict.hash_matches is None and verdict.ok is True


def test_no_jobs_is_not_ok() -> None:
    assert evidence([], None)["ok"] is False


@pytest.mark.parametrize("argv", [
    ["aml", "verify", "--job", "j"],  # no expectation
    ["aml", "verify", "--expect-code-id", "x"],  # no jobs
    ["aml", "verify", "--job", "j", "--adf-run-id", "r", "--expect-code-id", "x"],
    ["aml"],
])
def test_incomplete_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        code = main(argv)
        raise SystemExit(code)
    assert caught.value.code == 2


def test_missing_workspace_settings_exit_2_naming_the_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CICD_SUBSCRIPTION_ID", "CICD_RESOURCE_GROUP", "CICD_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--output", "json", "aml", "verify", "--job", "j", "--expect-code-id", "x"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert "subscription" in err["message"].lower() or "workspace" in err["message"].lower()


def test_adf_run_id_without_a_factory_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no cicd-tools.toml to take a factory from
    monkeypatch.delenv("CICD_FACTORY", raising=False)
    code = main(["aml", "verify", "--adf-run-id", "r", "--expect-code-id", "x", "--subscription-id", "s",
                 "--resource-group", "rg", "--workspace", "ws"])
    assert code == 2
    assert "--factory" in capsys.readouterr().err
