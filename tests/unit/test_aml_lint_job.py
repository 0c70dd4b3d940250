"""`aml lint-job`: every rule fires on a made-up file and stays quiet on the shipped jobs and pipelines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cicd_tools.adf.expressions import evaluate_json
from cicd_tools.adf.expressions.types import EvalContext
from cicd_tools.adf.lint import lint_paths
from cicd_tools.aml.lint_job import RULES, lint_files, lint_json_document
from cicd_tools.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [REPO / "aml" / "jobs" / "train.yml", REPO / "aml" / "jobs" / "validate.yml",
           REPO / "adf" / "pipeline" / "pl_run_aml_job.json", REPO / "adf" / "pipeline" / "pl_train_and_validate.json"]
WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
CODE = f"{WS}/codes/training-code/versions/3"
ENV = f"{WS}/environments/e/versions/1"
COMPUTE = f"{WS}/computes/aks-gpu"

GOOD_YAML = f"""
type: command
code: azureml:{CODE}
command: python train.py --epochs ${{{{inputs.epochs}}}} --model-dir ${{{{outputs.model}}}}
inputs:
  epochs: 5
  data:
    type: uri_folder
    path: azureml://datastores/workspaceblobstore/paths/data/
    mode: ro_mount
outputs:
  model:
    type: custom_model
    mode: rw_mount
environment: azureml:pytorch-gpu:1
compute: azureml:aks-gpu
resources:
  instance_type: gpu-a100
"""


def rules_of(findings: list[Any]) -> list[str]:
    return sorted(f.rule for f in findings)


def lint_yaml(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "job.yml"
    path.write_text(text)
    return rules_of(lint_files([path]))


def test_the_shipped_jobs_and_pipelines_have_no_findings() -> None:
    assert lint_files(SHIPPED) == []


def test_the_made_up_good_yaml_has_no_findings(tmp_path: Path) -> None:
    assert lint_yaml(tmp_path, GOOD_YAML) == []


@pytest.mark.parametrize(("old", "new", "rule"), [
    ("  epochs: 5\n", "  epochs:\n    type: string\n    value: '5'\n", "AML001"),
    ("  epochs: 5\n", "  epochs: ''\n", "AML002"),
    ("  epochs: 5\n", "  epochs:\n", "AML002"),
    ("    type: uri_folder\n    path: azureml://datastores/workspaceblobstore/paths/data/\n",
     "    type: mlflow_model\n    path: azureml://datastores/workspaceblobstore/paths/ckpt/model.pt\n", "AML003"),
    (f"code: azureml:{CODE}\n", "code: azureml:training-code:3\n", "AML004"),
    (f"code: azureml:{CODE}\n", "code: ../src/train\n", "AML004"),
    (f"code: azureml:{CODE}\n", f"code: {CODE}\n", "AML004"),
    ("resources:\n  instance_type: gpu-a100\n", "", "AML005"),
    ("    mode: ro_mount\n", "    mode: upload\n", "AML006"),
    ("    mode: rw_mount\n", "    mode: ro_mount\n", "AML006"),
])
def test_each_yaml_rule_fires_on_a_made_up_job(tmp_path: Path, old: str, new: str, rule: str) -> None:
    assert old in GOOD_YAML
    assert lint_yaml(tmp_path, GOOD_YAML.replace(old, new)) == [rule]


def test_mlflow_model_pointing_at_a_local_folder_without_mlmodel_fires_and_with_one_does_not(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    text = GOOD_YAML.replace("    type: uri_folder\n    path: azureml://datastores/workspaceblobstore/paths/data/\n",
                             "    type: mlflow_model\n    path: ckpt\n")
    assert lint_yaml(tmp_path, text) == ["AML003"]
    (tmp_path / "ckpt" / "MLmodel").write_text("flavors: {}\n")
    assert lint_yaml(tmp_path, text) == []


def rest_body(**changes: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"jobType": "Command", "command": "python train.py", "codeId": CODE,
                             "environmentId": ENV, "computeId": COMPUTE,
                             "inputs": {"epochs": {"jobInputType": "literal", "value": "2"}},
                             "outputs": {"model": {"jobOutputType": "custom_model", "mode": "ReadWriteMount"}},
                             "resources": {"instanceCount": 1, "instanceType": "gpu-a100"}}
    props.update(changes)
    return {"properties": props}


@pytest.mark.parametrize(("changes", "rule"), [
    ({"inputs": {"epochs": {"jobInputType": "integer", "value": "2"}}}, "AML001"),
    ({"inputs": {"epochs": {"jobInputType": "literal", "value": ""}}}, "AML002"),
    ({"inputs": {"m": {"jobInputType": "mlflow_model", "uri": "azureml://jobs/t/outputs/model/paths/m.ckpt"}}},
     "AML003"),
    ({"codeId": "azureml:training-code:3"}, "AML004"),
    ({"environmentId": "azureml:pytorch-gpu:1"}, "AML004"),
    ({"resources": {"instanceCount": 1}}, "AML005"),
    ({"inputs": {"m": {"jobInputType": "custom_model", "uri": "azureml://jobs/t/outputs/model",
                       "mode": "ReadWriteMount"}}}, "AML006"),
])
def test_each_rest_rule_fires_on_a_made_up_job_body(changes: dict[str, Any], rule: str) -> None:
    assert rules_of(lint_json_document(rest_body(), "job.json")) == []
    assert rules_of(lint_json_document(rest_body(**changes), "job.json")) == [rule]


def shipped_pipeline() -> dict[str, Any]:
    return dict(json.loads((REPO / "adf" / "pipeline" / "pl_run_aml_job.json").read_text()))


def submit_job(doc: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in doc["properties"]["activities"] if a["name"] == "SubmitJob")


def test_a_job_body_concatenated_as_json_text_fires_aml007_in_aml_lint_and_in_adf_lint(tmp_path: Path) -> None:
    doc = shipped_pipeline()
    submit_job(doc)["typeProperties"]["body"] = {
        "value": "@json(concat('{\"properties\":{\"jobType\":\"Command\",\"command\":\"', "
                 "pipeline().parameters.command, '\"}}'))", "type": "Expression"}
    path = tmp_path / "pipeline" / "pl_run_aml_job.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc, indent=2))
    assert rules_of(lint_files([path])) == ["AML007"]
    report = lint_paths([path])
    assert [f.rule for f in report.findings if f.rule.startswith("AML")] == ["AML007"]


def test_adf_lint_reports_a_bad_literal_in_a_job_body_object(tmp_path: Path) -> None:
    doc = shipped_pipeline()
    submit_job(doc)["typeProperties"]["body"]["properties"]["inputs"] = {
        "epochs": {"jobInputType": "string", "value": "2"}}
    path = tmp_path / "pl.json"
    path.write_text(json.dumps(doc))
    assert [f.rule for f in lint_paths([path]).findings if f.rule.startswith("AML")] == ["AML001"]


@pytest.mark.parametrize("command", ['python -c "print(\'a\')"', 'echo "}\\",\\"codeId\\":\\"x', "a\nb\\c"])
def test_the_shipped_job_body_keeps_any_command_intact_as_json(command: str) -> None:
    body = submit_job(shipped_pipeline())["typeProperties"]["body"]
    ctx = EvalContext(
        parameters={"command": command, "jobName": "j", "instanceType": "gpu-t4", "inputs": {}, "outputs": {}},
        global_parameters={"subscriptionId": "s", "resourceGroup": "rg", "workspaceName": "ws",
                           "computeName": "aks-gpu", "environmentId": "azureml:pytorch-gpu:1"},
        activity_outputs={"ReadPointer": {"assetId": CODE, "version": "3"}}, system={"RunId": "r"})
    sent = json.loads(json.dumps(evaluate_json(copy.deepcopy(body), ctx)))
    assert sent["properties"]["command"] == command
    assert sent["properties"]["codeId"] == CODE
    assert sent["properties"]["environmentId"].endswith("/workspaces/ws/environments/pytorch-gpu/versions/1")
    assert rules_of(lint_json_document(sent, "sent.json")) == []


def test_every_rule_has_a_severity_and_a_title() -> None:
    assert all(sev in ("error", "warning") and title for sev, title in RULES.values())


def test_lint_job_cli_exits_1_on_findings_0_on_clean_and_2_on_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD_YAML.replace("  epochs: 5\n", "  epochs: ''\n"))
    assert main(["--output", "json", "aml", "lint-job", str(bad)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["findings"][0]["rule"] == "AML002" and out["findings"][0]["path"] == "$.inputs.epochs"
    assert main(["aml", "lint-job", *map(str, SHIPPED)]) == 0
    capsys.readouterr()
    assert main(["aml", "lint-job", str(tmp_path / "nope.yml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["aml", "lint-job", str(tmp_path)]) == 2


def test_unparseable_yaml_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    assert lint_yaml(tmp_path, "type: command\ncommand: [unclosed\n") == ["AML000"]


PROBE = (
    "import sys\n"
    "from cicd_tools.cli.main import main\n"
    "code = main({argv!r})\n"
    "heavy = [m for m in ('azure.ai.ml', 'azure.mgmt.datafactory') if m in sys.modules]\n"
    "sys.stderr.write('HEAVY=%s CODE=%s' % (heavy, code))\n"
)


@pytest.mark.parametrize("argv", [["aml", "lint-job", *map(str, SHIPPED)], ["adf", "lint", str(REPO / "adf")]])
def test_linting_jobs_imports_no_azure_sdk(argv: list[str]) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
    assert "HEAVY=[] CODE=0" in proc.stderr, proc.stderr


def test_findings_carry_the_line_of_their_path_in_yaml_and_json(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("  epochs: 5\n", "  epochs: ''\n")
    path = tmp_path / "job.yml"
    path.write_text(text)
    [finding] = lint_files([path])
    assert finding.line == text.splitlines().index("  epochs: ''") + 1
    doc = shipped_pipeline()
    submit_job(doc)["typeProperties"]["body"]["properties"]["codeId"] = "azureml:training-code:3"
    pipeline = tmp_path / "pl.json"
    pipeline.write_text(json.dumps(doc, indent=2))
    [finding] = lint_files([pipeline])
    assert pipeline.read_text().splitlines()[finding.line - 1].strip().startswith('"codeId": "azureml:')  # type: ignore[operator]


def test_a_tab_on_line_4_is_reported_on_line_4_with_the_exit_code_of_ci_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20 case 4: lint-job said line 1 and exit 1 where `ci lint` said line 4 and exit 2."""
    bad = tmp_path / "job.yml"
    bad.write_text("$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
                   "command: python train.py\nenvironment: azureml:env:1\n\tcompute: azureml:k8s\n")
    ci_code = main(["ci", "lint", str(bad)])
    ci_err = capsys.readouterr().err
    assert ci_code == 2 and "line 4" in ci_err
    assert main(["aml", "lint-job", str(bad)]) == ci_code
    out = capsys.readouterr().out
    assert f"{bad}:4:" in out and "tab character" in out
    assert main(["-o", "json", "aml", "lint-job", str(bad)]) == 2
    finding = json.loads(capsys.readouterr().out)["findings"][0]
    assert (finding["rule"], finding["line"]) == ("AML000", 4)


def test_the_lint_job_operation_fails_a_warning_only_when_warnings_fail(tmp_path: Path) -> None:
    from cicd_tools.aml.operations import LintJobRequest, lint_jobs

    job = tmp_path / "job.yml"
    job.write_text(GOOD_YAML.replace("resources:\n  instance_type: gpu-a100\n", ""), encoding="utf-8")  # AML005
    strict = lint_jobs(LintJobRequest((job,), fail_on="warning"))
    lenient = lint_jobs(LintJobRequest((job,), fail_on="error"))
    assert [f.rule for f in strict.findings] == ["AML005"] == [f.rule for f in lenient.findings]
    assert not strict.passed and [f.rule for f in strict.failing] == ["AML005"]
    assert lenient.passed and lenient.failing == ()
