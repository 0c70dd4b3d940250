"""Sandbox Azure ML jobs, the pure parts: the storage-access verdict, durations, substitution, environments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cicd_tools.sandbox.layout import SandboxLayout
from cicd_tools.sandbox.ml.job_checks import environment_known
from cicd_tools.sandbox.ml.runner import DEFAULT_TIMEOUT, parse_duration, substitute
from cicd_tools.sandbox.state import CloudState
from cicd_tools.sandbox.world.chain import STREAM_AUTH, job_storage_access


class FakeHub:
    def __init__(self) -> None:
        self.layout = SandboxLayout()
        self.state = CloudState(self.layout)


def storage_id(hub: Any) -> str:
    return str(hub.layout.account_id(hub.layout.workspace_storage_account))


def test_shared_key_on_needs_no_data_role_for_the_compute() -> None:
    hub = FakeHub()
    assert job_storage_access(hub, "aks-gpu") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("role", "denied"), [
    (None, True), ("Storage Blob Data Reader", True), ("Contributor", True),
    ("Storage Blob Data Contributor", False), ("Storage Blob Data Owner", False),
])
def test_shared_key_off_the_compute_identity_needs_read_and_write_data_actions(role: str | None, denied: bool) -> None:
    hub = FakeHub()
    hub.state.update_account(hub.layout.workspace_storage_account, allow_shared_key_access=False)
    if role:
        hub.state.assign_role(hub.layout.compute_principal, role, storage_id(hub))
    verdict = job_storage_access(hub, "aks-gpu")  # type: ignore[arg-type]
    assert (verdict is not None) == denied
    if verdict is not None:
        assert verdict.code == STREAM_AUTH == "ScriptExecution.StreamAccess.Authentication"
        assert hub.layout.compute_principal in verdict.message and "Storage Blob Data Contributor" in verdict.message


def test_a_role_on_another_account_does_not_count() -> None:
    hub = FakeHub()
    hub.state.update_account(hub.layout.workspace_storage_account, allow_shared_key_access=False)
    hub.state.assign_role(hub.layout.compute_principal, "Storage Blob Data Contributor",
                          hub.layout.account_id(hub.layout.storage_account))
    assert job_storage_access(hub, "aks-gpu") is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT5M", 300), ("PT1H30M", 5400), ("P1DT2S", 86402), ("PT0.5S", 0.5),
    (None, DEFAULT_TIMEOUT), ("5m", DEFAULT_TIMEOUT),
])
def test_iso_durations_become_seconds(text: str | None, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_references_are_replaced_by_values_and_output_folders() -> None:
    command = "python t.py --e ${{inputs.epochs}} --d ${{ inputs.data }} --m ${{outputs.model}} --keep $HOME"
    out = substitute(command, {"epochs": "3", "data": "/in/data"}, {"model": Path("/out/model")})
    assert out == "python t.py --e 3 --d /in/data --m /out/model --keep $HOME"


WS = ("/subscriptions/5a4db0c0-0000-4000-8000-000000000001/resourceGroups/rg-mlops-sandbox/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw-sandbox")


@pytest.mark.parametrize(("env", "known"), [
    (f"{WS}/environments/pytorch-gpu/versions/1", True),
    (f"{WS}/environments/pytorch-gpu/versions/9", False),
    ("azureml://registries/azureml/environments/sklearn-1.5/labels/latest", True),
    ("azureml://registries/azureml/environments/sklearn-1.5/versions/25", True),
    ("azureml://registries/other/environments/sklearn-1.5/versions/25", False),
    ("azureml:pytorch-gpu:1", False),
])
def test_the_environments_the_sandbox_knows(env: str, known: bool) -> None:
    assert environment_known(FakeHub(), env) is known  # type: ignore[arg-type]
