"""The README's two quick starts, taken verbatim from README.md: at most ten lines each, and clean under the linters
the shipped pipelines pass (GitHub: actionlint + shellcheck, zizmor, the github-workflows schema, `ci lint`; Azure
DevOps: the azure-pipelines schema and `ci lint`). The action reference is also resolved to this checkout's
action.yml, so actionlint checks the quick start's `with:` against the action's real inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cicd_tools.cilint import lint_files
from cicd_tools.cli.main import build_parser
from tests.unit.test_pipelines_check import check

REPO = Path(__file__).resolve().parents[2]
ACTION_REF = "OWNER/cicd-tools@v1"
TEMPLATE_REF = re.compile(r"^(pipelines/azure-devops/templates/[\w-]+\.yml)@cicd-tools$")
# zizmor's default policy wants a commit for every `uses:`; the quick start names a tag of the team's own copy
# (README: pin it to the tag's commit, or allow it like this).
ZIZMOR_CONFIG = """rules:
  unpinned-uses:
    config:
      policies:
        "OWNER/cicd-tools": ref-pin
        "*": hash-pin
"""


def quickstart(title: str) -> str:
    """The fenced yaml block right after the bold ``title`` in README.md."""
    readme = REPO / "README.md"
    match = re.search(rf"\*\*{re.escape(title)}\*\*.*?```yaml\n(.*?)```", readme.read_text(), re.DOTALL)
    assert match, f"README.md has no `{title}` block"
    return match.group(1)


GITHUB = quickstart("GitHub Actions quick start")
AZURE = quickstart("Azure DevOps quick start")


@pytest.mark.parametrize("text", [GITHUB, AZURE], ids=["github", "azure-devops"])
def test_each_quick_start_is_at_most_ten_lines(text: str) -> None:
    assert 0 < len(text.strip().splitlines()) <= 10


def test_the_github_quick_start_uses_the_action_by_reference_and_runs_the_flow() -> None:
    steps = yaml.safe_load(GITHUB)["jobs"]["cicd"]["steps"]
    assert [s["uses"] for s in steps][-1] == ACTION_REF
    assert steps[-1]["with"]["command"] == "flow"


def test_the_github_quick_start_passes_actionlint_zizmor_the_schema_and_ci_lint(tmp_path: Path) -> None:
    workflow = tmp_path / "repo" / ".github" / "workflows" / "cicd.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(GITHUB)
    assert check.actionlint([workflow], action=None) == []
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    assert check.zizmor([workflow], config=config) == []
    assert check.schemas(workflows=[workflow]) == []
    assert lint_files([workflow], build_parser()) == []
    # The reference resolved to this checkout: the inputs it passes exist in action.yml, with the right values.
    resolved = tmp_path / "cicd.yml"
    resolved.write_text(GITHUB.replace(f"uses: {ACTION_REF}", "uses: ./"))
    assert check.actionlint([resolved]) == []


def test_the_azure_devops_quick_start_passes_the_schema_and_ci_lint(tmp_path: Path) -> None:
    pipeline = tmp_path / "azure-pipelines.yml"
    pipeline.write_text(AZURE)
    assert check.schemas(azure=[pipeline]) == []
    assert lint_files([pipeline], build_parser()) == []
    # Every template it references exists in this repository, and each takes the parameters given.
    for step in yaml.safe_load(AZURE)["steps"]:
        match = TEMPLATE_REF.match(step["template"])
        assert match, step["template"]
        template = yaml.safe_load((REPO / match.group(1)).read_text())
        declared = {p["name"]: p for p in template["parameters"]}
        given = step.get("parameters") or {}
        assert set(given) <= set(declared)
        assert {n for n, p in declared.items() if "default" not in p} <= set(given)
