"""Issue 20 case 2: ``flow`` reads what its configuration names before it changes anything.

A pipeline missing from the published factory (or published with other parameters), a missing factory, workspace
or compute is refused before the firewall opens and before a pointer moves, naming the missing resource truly
and the command that fixes it (``cicd-tools adf deploy adf/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd_tools.adf.client import FactoryNotFound, PipelineNotFound, RunNotFound, classify
from cicd_tools.flow.readiness import FlowNotReady, Published
from tests.unit import test_flow
from tests.unit.test_flow import FakeOperations, make_flow, saved

repo = test_flow.repo  # the same repository fixture

PUBLISHED = {"pl_train_and_validate": {"runTag": "String", "retries": "Int"}}


def refused(repo: Path, found: Published) -> FlowNotReady:
    fake = FakeOperations()
    fake.found = found
    with pytest.raises(FlowNotReady) as info:
        make_flow(fake).run()
    assert fake.names() == []  # nothing opened, registered or moved
    report = saved(repo)
    assert report.status == "failed" and report.exitCode == 2
    assert {s.status for s in report.steps} == {"not-run"}
    assert info.value.exit_code == 2
    return info.value


def test_a_pipeline_missing_from_the_published_factory_is_refused_before_any_change(repo: Path) -> None:
    err = refused(repo, Published(factory_found=True, missing_pipelines=("pl_train_and_validate",),
                                  workspace_found=True))
    assert err.code == "PipelineNotFound" and "pl_train_and_validate" in err.message
    assert "cicd-tools adf deploy adf/" in str(err.hint)


def test_a_missing_factory_is_named_as_the_factory(repo: Path) -> None:
    err = refused(repo, Published(factory_found=False))
    assert err.code == "FactoryNotFound" and "factory adf" in err.message


def test_a_parameter_the_published_pipeline_does_not_declare_is_refused(repo: Path) -> None:
    err = refused(repo, Published(factory_found=True, pipelines={"pl_train_and_validate": {"runTag": "String"}},
                                  workspace_found=True))
    assert err.code == "PipelineParameterNotDeclared" and "retries" in err.message


def test_a_parameter_of_the_wrong_type_is_refused(repo: Path) -> None:
    # the configuration passes retries = 2 (an Int); the published pipeline declares it Bool
    err = refused(repo, Published(factory_found=True, workspace_found=True,
                                  pipelines={"pl_train_and_validate": {"runTag": "String", "retries": "Bool"}}))
    assert err.code == "PipelineParameterType" and "Bool" in err.message


def test_a_required_parameter_the_configuration_does_not_pass_is_refused(repo: Path) -> None:
    err = refused(repo, Published(factory_found=True, workspace_found=True,
                                  pipelines={"pl_train_and_validate": {**PUBLISHED["pl_train_and_validate"],
                                                                       "region": "String"}},
                                  required={"pl_train_and_validate": ("region", "expectedCodeIds")}))
    assert err.code == "PipelineParameterMissing" and "region" in err.message
    assert "expectedCodeIds" not in err.message  # the flow passes it itself


def test_a_missing_workspace_or_compute_is_refused(repo: Path) -> None:
    assert refused(repo, Published(factory_found=True, workspace_found=False)).code == "WorkspaceNotFound"
    err = refused(repo, Published(factory_found=True, workspace_found=True, compute="k8s", compute_found=False))
    assert err.code == "ComputeNotFound" and "k8s" in err.message


def test_a_published_configuration_runs_and_the_reads_name_what_the_config_names(repo: Path) -> None:
    fake = FakeOperations()
    fake.found = Published(factory_found=True, pipelines=PUBLISHED, workspace_found=True, compute="k8s",
                           compute_found=True)
    make_flow(fake).run()
    request = fake.readiness[0]
    assert request.factory.name == "adf" and request.pipelines == ("pl_train_and_validate",)
    assert request.workspace_id.endswith("/workspaces/ws")
    assert fake.names()[0] == "firewall open"


class _Missing(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = 404
        self.error = type("E", (), {"code": code, "message": message})()


def test_a_404_on_create_run_names_the_pipeline_not_the_factory() -> None:
    # the sandbox (and ADF) answer a missing pipeline with NotFound "Entity ... not found in factory"
    err = classify(_Missing("NotFound", "Entity 'pl_x' of type 'pipelines' not found in factory 'adf'."),
                   "createRun pl_x")
    assert isinstance(err, PipelineNotFound) and err.to_dict()["error"] == "PipelineNotFound"
    assert "adf deploy adf/" in str(err.hint)
    missing_factory = classify(_Missing("ResourceNotFound", "The Resource 'Microsoft.DataFactory/factories/adf'"
                                        " under resource group 'rg' was not found."), "createRun pl_x")
    assert type(missing_factory) is FactoryNotFound
    assert isinstance(classify(_Missing("PipelineRunNotFound", "no run"), "get pipeline run r1"), RunNotFound)


def test_reads_that_fail_stop_the_flow_before_any_change_with_their_own_error(repo: Path) -> None:
    from cicd_tools.support.errors import AuthenticationFailed

    fake = FakeOperations()

    def unreadable(request: object) -> Published:
        raise AuthenticationFailed("get factory adf: no token for the management endpoint")

    fake.published = unreadable  # type: ignore[method-assign]
    with pytest.raises(AuthenticationFailed):
        make_flow(fake).run()
    assert fake.names() == []
    report = saved(repo)
    assert report.status == "failed" and report.exitCode == 3
