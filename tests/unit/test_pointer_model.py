"""The pointer model is the single source: the checked-in JSON Schema must match it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cicd_tools.pointer import CodeAssetPointer, pointer_json_schema

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
