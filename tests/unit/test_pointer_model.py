"""The pointer model is the single source: the checked-in JSON Schema must match it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cicd_tools.pointer.model import CodeAssetPointer, pointer_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "adf" / "contracts" / "code-asset-pointer.schema.json"
WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_checked_in_schema_matches_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == pointer_json_schema(), (
        "adf/contracts/code-asset-pointer.schema.json drifted: run "
        "`cicd-tools pointer schema --write adf/contracts/code-asset-pointer.schema.json`"
    )


def test_schema_requires_the_fields_consumers_depend_on() -> None:
    assert {"schemaVersion", "version", "assetId"} <= set(pointer_json_schema()["required"])


def test_asset_id_must_name_the_same_asset_and_version() -> None:
    CodeAssetPointer(assetName="a", version="3", assetId=f"{WS}/codes/a/versions/3")
    with pytest.raises(ValidationError, match="names a:4"):
        CodeAssetPointer(assetName="a", version="3", assetId=f"{WS}/codes/a/versions/4")
    with pytest.raises(ValidationError, match="full ARM id"):
        CodeAssetPointer(assetName="a", version="3", assetId="azureml:a:3")


def test_version_must_be_a_string_not_a_number() -> None:
    with pytest.raises(ValidationError):
        CodeAssetPointer.model_validate({"assetName": "a", "version": 3, "assetId": f"{WS}/codes/a/versions/3"})


def test_a_pointer_without_registration_time_is_read_without_one() -> None:
    from cicd_tools.pointer.model import parse_pointer

    doc = {"schemaVersion": 1, "assetName": "a", "version": "3", "assetId": f"{WS}/codes/a/versions/3"}
    assert parse_pointer(json.dumps(doc).encode(), source="x").registeredAtUtc is None


@pytest.mark.parametrize(
    ("current", "new", "superseded"),
    [
        ("2026-02-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z", True),
        ("2026-01-01T00:00:00.000000Z", "2026-02-01T00:00:00.000000Z", False),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:30:00Z", False),  # same instant minus 30 min: not newer
        ("2018-04-15T13:00:00.0000001Z", "2018-04-15T13:00:00Z", False),  # .NET's 7 digits, read as 6
        (None, "2026-01-01T00:00:00.000000Z", False),
        ("2026-02-01T00:00:00.000000Z", None, False),
        ("last tuesday", "2026-01-01T00:00:00.000000Z", False),
    ],
)
def test_the_supersede_check_applies_only_when_both_times_are_known(
    current: str | None, new: str | None, superseded: bool
) -> None:
    from cicd_tools.pointer.model import superseded_by

    def pointer(at: str | None) -> CodeAssetPointer:
        return CodeAssetPointer(assetName="a", version="3", assetId=f"{WS}/codes/a/versions/3", registeredAtUtc=at)

    assert superseded_by(pointer(current), pointer(new)) is superseded


@pytest.mark.parametrize("name", ["../../etc", "a/b", "a.b", "", "-lead", "x" * 256, "naïve"])
def test_a_name_azure_ml_would_refuse_is_refused_before_any_blob_path_is_built(name: str) -> None:
    from cicd_tools.pointer.contract import read_pointer
    from cicd_tools.pointer.model import pointer_blob_name
    from cicd_tools.support.errors import UsageError

    with pytest.raises(UsageError, match="invalid asset name"):
        pointer_blob_name(name)
    with pytest.raises(UsageError):
        read_pointer(object(), name)  # type: ignore[arg-type]  # refused before the container is touched
    with pytest.raises(ValidationError):
        CodeAssetPointer(assetName=name, version="1", assetId=f"{WS}/codes/{name}/versions/1")


@pytest.mark.parametrize("action", ["read", "history", "write", "rollback"])
def test_pointer_commands_refuse_an_invalid_asset_name_as_a_usage_error(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    argv = ["pointer", action, "--asset", "../../etc"]
    argv += {"write": ["--version", "1"], "rollback": ["--to", "1"]}.get(action, [])
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit for a bad flag value
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid asset name '../../etc'" in err
    assert "does not exist" not in err  # what it said before: the container does not exist
