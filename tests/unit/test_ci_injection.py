"""No user-derived string becomes a CI logging command (issue 19, point 2).

How the runners read a step's output, which the assertions below re-implement:
- Azure DevOps: lines end at CR, LF or CRLF; the agent acts on the first ``##vso[`` **anywhere** in a line
  (``Command.TryParse``: ``message.IndexOf("##vso[")``, microsoft/azure-pipelines-agent Command.cs) and shows
  ``##[group]`` etc. as formatting commands.
- GitHub Actions: a line that starts with ``::`` after leading whitespace is a command (``TryParseV2``), and the
  old ``##[name props]data`` form is found anywhere in a line (``TryParse``; actions/runner ActionCommand.cs).
Our own commands must carry the user text escaped per AZURE_FACTS.md §7: unescaping a property gives back the
exact file name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cicd_tools.ci import ado_unescape, gha_unescape
from cicd_tools.cli.main import main
from cicd_tools.report.model import AssetEvidence, ErrorInfo, EvidenceReport, StepRecord, write_report

PAYLOADS = {
    "lf": "x\n##vso[task.setvariable variable=PWNED]yes\n::warning::gh-injected\n",
    "cr": "x\r##vso[task.setvariable variable=PWNED]yes\r::warning::gh-injected\r",
    "percent": "x%0A##vso[task.setvariable variable=PWNED]yes%0D%0A::warning::gh-injected",
    "inline": "x ##vso[task.setvariable variable=PWNED]yes ##[set-output name=PWNED]yes ::warning::gh",
    "colons": "::error::gh-injected",
    "escape": "\x1b[2K\x1b[1G::warning::gh-injected\x1b]0;title\x07",
}
CI_ENVS = {"azure-devops": {"TF_BUILD": "True"}, "github": {"GITHUB_ACTIONS": "true"}}
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def inert(name: str) -> str:
    """The documented rendering of control bytes other than CR/LF in our commands (cicd_tools/ci.py)."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", lambda m: f"\\u{ord(m.group(0)):04x}", name)


def runner_lines(text: str) -> list[str]:
    return LINE_BREAK.split(text)


def check_azure_devops(lines: list[str], allowed_files: set[str]) -> list[dict[str, str]]:
    """Every ``##vso[`` is ours: at the start of a ``task.logissue`` line, with a sourcepath we printed."""
    commands = []
    for line in lines:
        assert not line.startswith("##[") or line.startswith(("##[group]", "##[endgroup]")), line
        if "##vso[" not in line.lower():
            continue
        assert line.startswith("##vso[task.logissue "), f"logging command not ours: {line!r}"
        info = line[len("##vso["): line.index("]")]
        props = dict(p.split("=", 1) for p in info.split(" ", 1)[1].split(";") if p)
        assert props["type"] in ("error", "warning")
        if "sourcepath" in props:
            assert ado_unescape(props["sourcepath"]) in allowed_files
        data = ado_unescape(line[line.index("]") + 1:])
        commands.append({k: ado_unescape(v) for k, v in props.items()} | {"data": data})
    return commands


def check_github(lines: list[str], allowed_files: set[str]) -> list[dict[str, str]]:
    """Every line starting with ``::`` is one of our annotations; no old-style ``##[`` command anywhere."""
    commands = []
    for line in lines:
        stripped = line.lstrip()
        if not stripped.startswith("::"):  # the runner tries `::` first, then the old form anywhere
            assert "##[" not in line, f"old-style command in a line: {line!r}"
            continue
        match = re.fullmatch(r"::(error|warning|notice)( [^:]*)?::(.*)", stripped)
        assert match, f"workflow command not ours: {line!r}"
        props = dict(p.split("=", 1) for p in (match.group(2) or "").strip().split(",") if p)
        assert set(props) <= {"file", "line", "title"}
        if "file" in props:
            assert gha_unescape(props["file"]) in allowed_files
        commands.append({k: gha_unescape(v) for k, v in props.items()} | {"data": gha_unescape(match.group(3))})
    return commands


def run(
    argv: list[str], ci: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    for name in ("TF_BUILD", "GITHUB_ACTIONS", "GITHUB_OUTPUT", "CICD_CI", "CICD_OUTPUT", "CICD_CI_STREAM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CI_ENVS[ci].items():
        monkeypatch.setenv(name, value)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + "\n" + captured.err


def adf_pipeline(folder: Path, payload: str) -> Path:
    path = folder / f"pl_{payload}.json"
    act = {"name": f"W{payload}", "type": "WebActivity", "typeProperties": {"method": "GET"}}
    path.write_text(json.dumps({"name": f"pl{payload}", "properties": {"activities": [act]}}), encoding="utf-8")
    return path


def ci_pipeline(folder: Path, payload: str) -> Path:
    path = folder / f"ci_{payload}.yml"
    path.write_text("trigger: none\npool: { vmImage: ubuntu-latest }\nsteps:\n"
                    "  - script: cicd-tools firewall open\n  - script: cicd-tools firewall close\n")
    return path


def job_yaml(folder: Path, payload: str) -> Path:
    path = folder / f"job_{payload}.yml"
    path.write_text("type: command\ncommand: python train.py\nenvironment: azureml:e:1\ncompute: azureml:c\n"
                    "inputs:\n  epochs: ''\n")
    return path


def hostile_report(folder: Path, payload: str) -> Path:
    path = folder / "evidence.json"
    write_report(path, EvidenceReport(
        tool=f"cicd-tools {payload}", startedAtUtc="2026-12-01T00:00:00Z", status="failed", exitCode=4,
        steps=[StepRecord(name=f"register{payload}", status="failed", durationSeconds=1.0,
                          error=ErrorInfo(type="X", message=f"boom{payload}", exitCode=4))],
        assets=[AssetEvidence(name=f"code{payload}", requestedVersion=f"9{payload}", version="3")],
    ))
    return path


def code_folder(folder: Path, payload: str) -> Path:
    root = folder / "src"
    root.mkdir()
    (root / f"f_{payload}.py").write_text("print(1)\n")
    return root


def build(case: str, tmp_path: Path, payload: str) -> tuple[list[str], set[str]]:
    if case == "adf lint":
        path = adf_pipeline(tmp_path, payload)
        return ["adf", "lint", str(path)], {str(path)}
    if case == "adf lint annotations":
        path = adf_pipeline(tmp_path, payload)
        return ["adf", "lint", "--format", "annotations", str(path)], {str(path)}
    if case == "adf lint json":
        path = adf_pipeline(tmp_path, payload)
        return ["adf", "lint", "--format", "json", str(path)], {str(path)}
    if case == "adf lint missing file":
        return ["adf", "lint", str(tmp_path / f"nope{payload}.json")], set()
    if case == "ci lint":
        path = ci_pipeline(tmp_path, payload)
        return ["ci", "lint", str(path)], {str(path)}
    if case == "aml lint-job":
        path = job_yaml(tmp_path, payload)
        return ["aml", "lint-job", str(path)], {str(path)}
    if case == "aml lint-job json":
        path = job_yaml(tmp_path, payload)
        return ["--output", "json", "aml", "lint-job", str(path)], {str(path)}
    if case == "report show":
        return ["report", "show", str(hostile_report(tmp_path, payload))], set()
    if case == "code hash":
        return ["code", "hash", "--list-files", str(code_folder(tmp_path, payload))], set()
    raise AssertionError(case)


CASES = ["adf lint", "adf lint annotations", "adf lint json", "adf lint missing file", "ci lint", "aml lint-job",
         "aml lint-job json", "report show", "code hash"]


@pytest.mark.parametrize("ci", sorted(CI_ENVS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("case", CASES)
def test_no_user_derived_string_becomes_a_logging_command(
    case: str, payload: str, ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, files = build(case, tmp_path, PAYLOADS[payload])
    files = {inert(f) for f in files}
    code, output = run(argv, ci, monkeypatch, capsys)
    assert code in (0, 1, 2), output
    lines = runner_lines(output)
    check = check_azure_devops if ci == "azure-devops" else check_github
    commands = check(lines, files)
    assert not [line for line in lines if "\x1b" in line], "a raw ESC reached the log"
    assert "PWNED" in output or "gh-injected" in output, "the hostile text must still be shown (escaped)"
    if case in ("adf lint annotations", "ci lint", "aml lint-job") or (case.startswith("adf lint") and code == 2):
        assert commands, "the findings must still be annotated"
    if case.endswith("json"):  # stdout is still one JSON document, with the hostile text intact
        doc, _ = json.JSONDecoder().raw_decode(output, output.index("{"))
        assert any(PAYLOADS[payload] in text for text in strings(doc))


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_annotation_properties_carry_the_exact_file_name(
    payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = adf_pipeline(tmp_path, PAYLOADS[payload])
    for ci in CI_ENVS:
        code, output = run(["adf", "lint", "--format", "annotations", str(path)], ci, monkeypatch, capsys)
        assert code == 1
        check = check_azure_devops if ci == "azure-devops" else check_github
        commands = check(runner_lines(output), {inert(str(path))})
        key = "sourcepath" if ci == "azure-devops" else "file"
        assert [c[key] for c in commands] == [inert(str(path))]
        assert f"W{inert(PAYLOADS[payload])}" in commands[0]["data"]  # the activity name, whole, in the message
