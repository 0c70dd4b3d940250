"""The generated coverage page is current, and a route the sandbox does not emulate answers 501 naming the
operation (never a 404 a client would read as a missing resource), without sockets."""

from __future__ import annotations

import importlib.util
import json
import sys
from email.message import Message
from pathlib import Path
from types import ModuleType

import pytest

from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.ml.jobs import studio_url
from cicd_tools.sandbox.server import ArmHandler, Request, operation_name
from cicd_tools.sandbox.state import CloudState

REPO = Path(__file__).resolve().parents[2]


def coverage_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_coverage", REPO / "scripts" / "sandbox_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sandbox_coverage"] = module
    spec.loader.exec_module(module)
    return module


def specs_folder(script: ModuleType) -> Path:
    """``../shared/specs`` beside the checkout (CI has it), or ``$SHARED_DIR/specs``. A checkout without it fails;
    an unpacked sdist (it has ``PKG-INFO`` at its root) does not carry the project's shared folder, so there the
    tests that read the spec excerpts skip, saying how to run them."""
    specs: Path = script.specs_dir()
    if not specs.is_dir() and (REPO / "PKG-INFO").is_file():
        pytest.skip(f"unpacked sdist: the REST spec excerpts are not part of it (no {specs}); "
                    "set SHARED_DIR to a folder holding specs/ to run this test")
    assert specs.is_dir(), f"no specs at {specs}: put shared/ beside the checkout or set SHARED_DIR"
    return specs


def test_the_checked_in_coverage_page_is_what_the_script_generates() -> None:
    script = coverage_script()
    specs = specs_folder(script)
    page = (REPO / "docs" / "sandbox-coverage.md").read_text(encoding="utf-8")
    assert page == script.render(specs), "stale: run `python scripts/sandbox_coverage.py`"


def test_the_page_lists_every_operation_of_the_spec_excerpts() -> None:
    script = coverage_script()
    specs = specs_folder(script)
    listed = {(o.method, o.path) for o in script.spec_operations(specs)}
    raw = json.loads((specs / "datafactory" / "2018-06-01_datafactory.paths.pipelineruns.json").read_text())
    for path, ops in raw.items():
        if path.startswith("/"):
            assert {(m.upper(), path) for m in ops} <= listed


class _Hub:
    def __init__(self) -> None:
        self.layout = SandboxLayout()
        self.state = CloudState(self.layout, propagation_delay=0)


def _unrouted(method: str, path: str) -> tuple[int, dict[str, dict[str, str]]]:
    handler = ArmHandler.__new__(ArmHandler)  # _handle needs no socket
    req = Request(method, path, [("api-version", "2026-09-01")], Message(), b"", "127.0.0.1")
    answer = handler._handle(None, False, req, _Hub())  # type: ignore[arg-type]
    return answer.status, json.loads(answer.body)


def test_an_unknown_arm_operation_answers_501_naming_it() -> None:
    layout = SandboxLayout()
    status, body = _unrouted("POST", layout.account_id(layout.storage_account) + "/regenerateKey")
    assert status == 501 and body["error"]["code"] == "NotImplemented"
    assert "POST Microsoft.Storage/storageAccounts/regenerateKey" in body["error"]["message"]
    status, body = _unrouted("GET", f"/subscriptions/{layout.subscription_id}/resourceGroups")
    assert (status, body["error"]["code"]) == (501, "NotImplemented")


def test_an_unknown_control_route_stays_a_404() -> None:
    status, body = _unrouted("GET", "/_sandbox/no-such-switch")
    assert (status, body["error"]["code"]) == (404, "NotFound")


@pytest.mark.parametrize(("method", "path", "name"), [
    ("DELETE", "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataFactory/factories/f",
     "DELETE Microsoft.DataFactory/factories"),
    ("POST", "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataFactory/factories/f/queryTriggerRuns",
     "POST Microsoft.DataFactory/factories/queryTriggerRuns"),
    ("GET", "/subscriptions/s/providers/Microsoft.Storage/checkNameAvailability",
     "GET Microsoft.Storage/checkNameAvailability"),
    ("GET", "/subscriptions/s/resourceGroups", "GET subscriptions/resourceGroups"),
    ("GET", "/tenant-1/oauth2/v2.0/authorize", "GET /tenant-1/oauth2/v2.0/authorize"),
])
def test_operation_names_keep_the_namespace_and_the_resource_types(method: str, path: str, name: str) -> None:
    assert operation_name(method, path) == name


def test_the_studio_url_carries_the_workspace_and_the_tenant_as_the_service_writes_it() -> None:
    from azure.ai.ml.entities._job._studio_url_from_job_id import studio_url_from_job_id

    from cicd_tools.sandbox.identity.identity import SANDBOX_TENANT

    hub = _Hub()
    layout = hub.layout
    url = studio_url(hub, "job-1")  # type: ignore[arg-type]
    job_id = (f"/subscriptions/{layout.subscription_id}/resourceGroups/{layout.resource_group}/providers/"
              f"Microsoft.MachineLearningServices/workspaces/{layout.workspace}/jobs/job-1")
    # azure-ai-ml's own builder gives the run and wsid part; the service appends &tid=<tenant> (field answers).
    sdk = studio_url_from_job_id(job_id)
    assert sdk is not None and url == f"{sdk}&tid={SANDBOX_TENANT}"
