"""One pointer validator (issue 19, point 6): the shipped pl_read_pointer's CheckContract, run by the local ADF
runner against a blob endpoint that answers ranges as Blob Storage does, accepts exactly what
``parse_pointer`` (``pointer read``) accepts.

The stand-in answers ``x-ms-range: bytes=a-b`` with those bytes (206), as the Get Blob REST API documents, and the
runner decodes the body as declared (application/json: UTF-8) like ``RequestsWebCaller``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.loader import load_factory
from cicd_tools.adf.runner import run_pipeline
from cicd_tools.adf.web import WebRequest, WebResponse
from cicd_tools.pointer.model import parse_pointer
from cicd_tools.support.errors import ContractViolation

REPO_ADF = Path(__file__).resolve().parents[2] / "adf"
LOADED = load_factory(REPO_ADF)
GLOBALS = {k: v["value"] for k, v in (LOADED.factory.global_parameters or {}).items()}
WS = (f"/subscriptions/{GLOBALS['subscriptionId']}/resourceGroups/{GLOBALS['resourceGroup']}/providers/"
      f"Microsoft.MachineLearningServices/workspaces/{GLOBALS['workspaceName']}")


class BlobStandIn:
    """Serves one blob body; honours ``x-ms-range`` (Get Blob: 206 with the range)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def call(self, request: WebRequest) -> WebResponse:
        wanted = dict(request.headers).get("x-ms-range", "")
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", wanted)
        body = self.body[int(match[1]): int(match[2]) + 1] if match else self.body
        return WebResponse(206 if match else 200, {"Content-Type": "application/json"},
                           body.decode("utf-8", errors="replace"))


def doc(**changes: Any) -> dict[str, Any]:
    return {"schemaVersion": 1, "assetName": "training-code", "version": "7",
            "assetId": f"{WS}/codes/training-code/versions/7"} | changes


CASES: dict[str, bytes] = {
    "valid": json.dumps(doc(), indent=2).encode(),
    "valid, other case in the resource types": json.dumps(doc(assetId=f"{WS.lower()}/codes/training-code/versions/7"))
    .encode(),
    "number version": json.dumps(doc(version=7)).encode(),
    "empty version": json.dumps(doc(version="", assetId=f"{WS}/codes/training-code/versions/")).encode(),
    "utf-8 bom": b"\xef\xbb\xbf" + json.dumps(doc()).encode(),
    "leading whitespace": b"\n" + json.dumps(doc()).encode(),
    "foreign workspace": json.dumps(doc(assetId=f"{WS.replace(GLOBALS['workspaceName'], 'mlw-other')}"
                                                "/codes/training-code/versions/7")).encode(),
    "foreign subscription": json.dumps(doc(assetId=f"{WS.replace(GLOBALS['subscriptionId'], '0000')}"
                                                   "/codes/training-code/versions/7")).encode(),
    "assetId names another version": json.dumps(doc(assetId=f"{WS}/codes/training-code/versions/8")).encode(),
    "another asset's document": json.dumps(doc(assetName="other-code",
                                               assetId=f"{WS}/codes/other-code/versions/7")).encode(),
    "schemaVersion 2": json.dumps(doc(schemaVersion=2)).encode(),
    "over 64 KiB": json.dumps(doc(padding="x" * (64 * 1024))).encode(),
    "not json": b"{not json",
}


def python_accepts(body: bytes) -> bool:
    try:
        parse_pointer(body, source="latest.json", asset="training-code", workspace_id=WS)
    except ContractViolation:
        return False
    return True


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_contract_and_pointer_read_agree(case: str) -> None:
    pipeline = next(p for p in LOADED.pipelines if p.name == "pl_read_pointer")
    result = run_pipeline(pipeline, parameters={"assetName": "training-code"}, factory=LOADED.factory,
                          http=BlobStandIn(CASES[case]))
    expected = case.startswith("valid")
    assert python_accepts(CASES[case]) is expected
    assert result.succeeded is expected, (result.status, result.message)
    if not expected:
        assert result.failure is not None and result.failure.activity_name in (
            "PointerContractViolated", "CheckContract")


def test_every_shipped_pipeline_that_reads_the_pointer_checks_the_same_contract() -> None:
    readers = {p.name: p for p in LOADED.pipelines if "ReadPointer" in json.dumps(p.resource)}
    assert set(readers) >= {"pl_read_pointer", "pl_run_aml_job"}
    expressions = {name: next(a for a in p.properties["activities"] if a["name"] == "CheckContract")
                   ["typeProperties"]["expression"]["value"] for name, p in readers.items()}
    assert len(set(expressions.values())) == 1, expressions
