"""zizmor, check-jsonschema and actionlint (with shellcheck) report nothing on pipelines/ and the root action.yml;
and each of them does report the mistake it exists for (so a clean run means something)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipelines_check", REPO / "scripts" / "pipelines_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipelines_check"] = module
    spec.loader.exec_module(module)
    return module


check = _load_check()
WORKFLOWS = sorted((REPO / "pipelines" / "github" / ".github" / "workflows").glob("*.yml"))
AZURE = sorted((REPO / "pipelines" / "azure-devops").rglob("*.yml"))
THIRD_PARTY = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@(\S+)(.*)$", re.MULTILINE)


def test_zizmor_reports_nothing_on_the_github_pipelines_and_the_root_action() -> None:
    assert check.zizmor([REPO / "pipelines" / "github", check.ACTION]) == []


def test_the_vendored_schemas_accept_every_workflow_action_and_azure_pipeline() -> None:
    assert len(WORKFLOWS) >= 2 and len(AZURE) >= 5
    assert check.schemas(WORKFLOWS, [check.ACTION], AZURE) == []


def test_actionlint_with_shellcheck_reports_nothing_and_the_action_scripts_are_shellcheck_clean() -> None:
    assert check.actionlint(WORKFLOWS) == []
    assert check.action_scripts() == []


def test_every_third_party_action_is_pinned_to_a_commit_with_its_tag_on_a_node24_major() -> None:
    # The majors that run on node24 (each repository's action.yml at the tag says `using: node24`).
    node24 = {"actions/checkout": "v7", "actions/setup-python": "v7", "actions/upload-artifact": "v7",
              "actions/cache": "v5", "azure/login": "v3"}
    found = []
    for path in [check.ACTION, *WORKFLOWS]:
        for name, ref, comment in THIRD_PARTY.findall(path.read_text()):
            found.append(name)
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{path.name}: {name}@{ref} is not a full commit SHA"
            tag = re.fullmatch(r"\s*#\s*(v\d+)(?:\.\d+)*\s*", comment)
            assert tag, f"{path.name}: {name}@{ref} has no `# vX.Y.Z` tag comment"
            assert tag.group(1) == node24[name.lower()], f"{path.name}: {name} {tag.group(1)} is not its node24 major"
    assert {"actions/checkout", "actions/setup-python", "actions/upload-artifact", "actions/cache"} <= set(found)


def test_checkout_never_persists_credentials_and_every_job_states_its_permissions() -> None:
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text())
        assert doc["permissions"] == {}, path.name
        for name, job in doc["jobs"].items():
            assert set(job["permissions"]) <= {"contents", "id-token"}, f"{path.name}: {name}"
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, f"{path.name}: {name}"


def test_no_placeholder_url_and_no_node20_major_anywhere() -> None:
    package = [*(REPO / "cicd_tools").rglob("*.py"), *(REPO / "cicd_tools").rglob("*.json")]
    for path in [check.ACTION, *WORKFLOWS, *AZURE, REPO / "README.md", *package]:
        text = path.read_text()
        assert "github.com/cicd-tools/cicd-tools" not in text, path.name
        assert "raw.githubusercontent.com" not in text, path.name
        old = re.findall(r"(?:actions/checkout@v4|actions/setup-python@v5|actions/upload-artifact@v4|azure/login@v2)\b",
                         text)
        assert not old, f"{path.name}: {old}"


def test_every_action_input_has_a_description_and_reaches_shell_only_through_env() -> None:
    doc = yaml.safe_load(check.ACTION.read_text())
    assert all(spec.get("description") for spec in doc["inputs"].values())
    for step in doc["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("id")


def test_each_tool_reports_the_mistake_it_exists_for(tmp_path: Path) -> None:
    # The old register-code action: `${{ inputs.report }}` expanded inside run: (a template injection).
    action = tmp_path / "action.yml"
    action.write_text("""name: x
description: x
inputs:
  report: { description: where }
runs:
  using: composite
  steps:
    - uses: actions/setup-python@v5
    - shell: bash
      run: cicd-tools flow --report "${{ inputs.report }}"
""")
    found = "\n".join(check.zizmor([action]))
    assert "template-injection" in found and "unpinned-uses" in found
    assert check.action_scripts(action) != []
    workflow = tmp_path / "wf.yml"
    workflow.write_text("""on: push
permissions: {}
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: ./
        with: { comand: flow }
      - run: echo $UNQUOTED_VARIABLE
""")
    linted = "\n".join(check.actionlint([workflow]))
    assert 'input "comand" is not defined' in linted and "SC2086" in linted
    no_description = tmp_path / "bare" / "action.yml"
    no_description.parent.mkdir()
    no_description.write_text(action.read_text().replace("description: where", "default: x"))
    assert check.schemas(actions=[no_description]) != []
