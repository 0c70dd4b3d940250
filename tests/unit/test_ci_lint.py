"""`cicd-tools ci lint`: the shipped pipelines pass; made-up broken ones fail with the rule, file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.cilint import lint_files
from cicd_tools.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [*sorted((REPO / "pipelines").rglob("*.yml")), REPO / "action.yml"]

ADO_HEAD = """trigger: none
pool: { vmImage: ubuntu-latest }
variables:
  - group: mlops-cicd
steps:
"""
GH_HEAD = """name: x
on: push
permissions: { id-token: write, contents: read }
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
"""


def lint(tmp_path: Path, text: str, name: str = "pipeline.yml") -> list[tuple[str, int]]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [(f.rule, f.line) for f in lint_files([path], build_parser())]


def test_the_shipped_pipelines_pass_ci_lint() -> None:
    assert len(SHIPPED) >= 8
    findings = lint_files(SHIPPED, build_parser())
    assert findings == [], "\n".join(f"{f.file}:{f.line} {f.rule} {f.message}" for f in findings)


def test_the_shipped_pipelines_have_the_documented_shape() -> None:
    files = {p.relative_to(REPO).as_posix() for p in SHIPPED}
    assert {"action.yml", "pipelines/github/.github/workflows/cicd.yml",
            "pipelines/github/.github/workflows/firewall-sweep.yml", "pipelines/azure-devops/azure-pipelines.yml",
            "pipelines/azure-devops/firewall-sweep.yml", "pipelines/azure-devops/templates/setup.yml",
            "pipelines/azure-devops/templates/flow.yml", "pipelines/azure-devops/templates/sweep.yml"} <= files
    for path in SHIPPED:
        text = path.read_text()
        assert "install -c constraints.txt ." not in text and "pip install ." not in text


def test_the_version_read_from_build_id_is_flagged_in_both_dialects(tmp_path: Path) -> None:
    ado = ADO_HEAD + """  - script: cicd-tools pointer write --asset training-code --version $(Build.BuildId)
  - bash: |
      echo "##vso[task.setvariable variable=codeVersion;isOutput=true]$(Build.BuildId)"
    name: v
"""
    assert lint(tmp_path, ado) == [("CI001", 6), ("CI001", 8)]
    gh = GH_HEAD + """      - run: cicd-tools adf run --pipeline p --param codeVersion=${{ github.run_id }}
      - run: echo "codeVersion=${{ github.run_id }}" >> "$GITHUB_OUTPUT"
        env:
          CODE_VERSION: ${{ github.run_id }}
"""
    found = [f for f in lint(tmp_path, gh, "wf.yml") if f[0] != "CI006"]  # `adf run` may not be in this build
    assert found == [("CI001", 8), ("CI001", 9), ("CI001", 11)]


def test_requesting_the_build_id_as_version_at_registration_is_fine(tmp_path: Path) -> None:
    ado = ADO_HEAD + "  - script: cicd-tools code register --name t --path src --version $(Build.BuildId)\n"
    assert lint(tmp_path, ado) == []


def test_a_close_without_always_is_flagged(tmp_path: Path) -> None:
    ado = ADO_HEAD + """  - script: cicd-tools firewall open
  - script: cicd-tools firewall close
    condition: succeededOrFailed()
"""
    assert lint(tmp_path, ado) == [("CI002", 7)]
    gh = GH_HEAD + """      - run: cicd-tools firewall close
        if: ${{ !cancelled() }}
      - run: cicd-tools firewall close
        if: ${{ always() }}
"""
    assert lint(tmp_path, gh, "wf.yml") == [("CI002", 8)]


def test_a_service_connection_from_a_variable_or_group_is_flagged_and_a_parameter_is_not(tmp_path: Path) -> None:
    ado = ADO_HEAD.replace("steps:\n", """parameters:
  - name: sc
    type: string
    default: conn
steps:
""") + """  - task: AzureCLI@2
    inputs:
      azureSubscription: $(serviceConnection)
      inlineScript: cicd-tools storage smoke
  - task: AzureCLI@2
    inputs:
      azureSubscription: ${{ variables.serviceConnection }}
      inlineScript: cicd-tools storage smoke
  - task: AzureCLI@2
    inputs:
      azureSubscription: ${{ parameters.sc }}
      inlineScript: cicd-tools storage smoke
"""
    assert lint(tmp_path, ado) == [("CI004", 12), ("CI004", 16)]


def test_outputs_nobody_sets_are_flagged(tmp_path: Path) -> None:
    gh = GH_HEAD + """      - id: code
        run: cicd-tools code register --asset training-code=src/train
      - run: echo ${{ steps.code.outputs.codeVersion }} ${{ steps.code.outputs.training_code_codeVersion }}
      - run: echo ${{ steps.nope.outputs.x }}
  later:
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ needs.build.outputs.v }}
"""
    assert lint(tmp_path, gh, "wf.yml") == [("CI003", 10), ("CI003", 11), ("CI003", 15)]


def test_oidc_login_without_id_token_permission_is_flagged(tmp_path: Path) -> None:
    head = GH_HEAD.replace("permissions: { id-token: write, contents: read }", "permissions: { contents: read }")
    gh = head + """      - uses: azure/login@v2
        with: { client-id: x, tenant-id: y, subscription-id: z }
  secret:
    runs-on: ubuntu-latest
    steps:
      - uses: azure/login@v2
        with: { creds: "${{ secrets.AZURE }}" }
"""
    assert lint(tmp_path, gh, "wf.yml") == [("CI005", 5)]


def test_commands_and_flags_that_do_not_exist_are_flagged(tmp_path: Path) -> None:
    gh = GH_HEAD + """      - run: |
          cicd-tools firewall opne
          cicd-tools storage smoke --acount x && cicd-tools firewall close --lease-id ${{ github.run_id }}
          version=$(cicd-tools pointer read --asset t --field version)
          pip install cicd-tools==0.1.0
        if: always()
"""
    assert lint(tmp_path, gh, "wf.yml") == [("CI006", 9), ("CI006", 10)]


def test_installing_the_repository_itself_is_flagged(tmp_path: Path) -> None:
    ado = ADO_HEAD + """  - script: python -m pip install -c constraints.txt .
  - script: pip install -e .[dev]
  - script: pip install -c https://example.org/c.txt "cicd-tools @ git+https://example.org/cicd-tools@v1"
"""
    assert lint(tmp_path, ado) == [("CI007", 6), ("CI007", 7)]


def test_the_original_broken_pipelines_of_the_issue_fail(tmp_path: Path) -> None:
    ado = """trigger: none
variables:
  - group: mlops-cicd
steps:
  - bash: python -m pip install --quiet -c constraints.txt .
  - task: AzureCLI@2
    inputs:
      azureSubscription: $(serviceConnection)
      inlineScript: cicd-tools firewall close
"""
    assert {rule for rule, _ in lint(tmp_path, ado)} == {"CI002", "CI004", "CI007"}


def test_the_command_exits_1_with_annotations_and_2_for_a_file_that_is_not_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "p.yml"
    bad.write_text(ADO_HEAD + "  - script: cicd-tools firewall close\n")
    assert main(["--ci", "github", "ci", "lint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"::error file={bad},line=6,title=CI002::" in err
    assert main(["--output", "json", "--ci", "plain", "ci", "lint", str(bad)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"][0]["rule"] == "CI002"
    (tmp_path / "broken.yml").write_text("steps: [\n")
    assert main(["--ci", "plain", "ci", "lint", str(tmp_path / "broken.yml")]) == 2
    assert main(["--ci", "plain", "ci", "lint", str(tmp_path / "missing.yml")]) == 2


def test_building_the_parser_imports_neither_yaml_nor_pydantic() -> None:
    import subprocess
    import sys

    code = ("import sys; from cicd_tools.cli.main import build_parser; build_parser();"
            " print(sorted(m for m in ('yaml', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", [
    "", "[]\n", "42\n", "jobs: 3\non: push\n", "on: push\njobs:\n  a: {steps: 7, needs: {x: 1}, outputs: [1]}\n",
    "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [7, {run: 3}, {uses: ./missing}, {with: [1]}]\n",
    "runs: {using: composite, steps: {a: 1}}\noutputs: [1]\n",
    "steps: {a: 1}\nvariables: 3\n",
    "stages: [1, {jobs: 3}, {jobs: [1, {job: a, dependsOn: {x: 1}, steps: [null]}]}]\n",
    "trigger: none\nsteps:\n  - template: missing.yml\n  - template: x@other\n  - task: A@1\n    inputs: [1]\n",
    "parameters: 3\nsteps:\n  - script: 'cicd-tools \"unterminated'\n",
    "a: &x {b: 1}\nsteps: [*x]\n",
])
def test_odd_yaml_never_crashes_the_linter(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.yml"
    path.write_text(text)
    assert main(["--ci", "plain", "ci", "lint", str(path)]) in (0, 1, 2)
    assert "internal error" not in capsys.readouterr().err


def test_predefined_variables_group_variables_and_reusable_workflows_are_not_findings(tmp_path: Path) -> None:
    ado = ADO_HEAD + """  - script: echo $(Agent.TempDirectory) $(Build.SourcesDirectory) $(terraform.version)
"""
    assert lint(tmp_path, ado) == []  # terraform.version may come from the variable group
    gh = """on: push
jobs:
  build:
    uses: ./.github/workflows/reusable.yml
  after:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ needs.build.outputs.anything }}
"""
    assert lint(tmp_path, gh, "wf.yml") == []
    no_group = ADO_HEAD.replace("  - group: mlops-cicd\n", "  - name: x\n    value: y\n")
    assert lint(tmp_path, no_group + "  - script: echo $(fw.leaseId)\n") == [("CI003", 7)]
