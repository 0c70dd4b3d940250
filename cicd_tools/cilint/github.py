"""GitHub Actions workflows and composite actions: always() cleanup, step/job outputs, OIDC permissions."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cicd_tools.cilint.findings import Finding
from cicd_tools.cilint.scripts import analyse, build_id_finding, version_entries
from cicd_tools.cilint.yamlsrc import line_of, load_yaml

_STEP_REF = re.compile(r"steps\.([\w-]+)\.outputs\.([\w-]+)")
_NEEDS_REF = re.compile(r"needs\.([\w-]+)\.outputs\.([\w-]+)")


def strings(obj: Any) -> Iterator[str]:
    """Every string inside ``obj`` (keys excluded)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from strings(value)


def _always(condition: Any) -> bool:
    return isinstance(condition, str) and "always()" in condition.replace(" ", "")


def _repo_root(path: Path) -> Path:
    """Where ``uses: ./…`` is resolved: the folder holding ``.github`` (or the current directory)."""
    parts = path.resolve().parts
    if ".github" in parts:
        return Path(*parts[: parts.index(".github")])
    return Path.cwd()


def _local_action(path: Path, uses: str) -> dict[str, Any] | None:
    folder = _repo_root(path) / uses[2:]
    for name in ("action.yml", "action.yaml"):
        if (folder / name).is_file():
            doc = load_yaml(folder / name)
            return doc if isinstance(doc, dict) else None
    return None


def _is_oidc_login(step: Any) -> bool:
    uses = step.get("uses") if isinstance(step, dict) else None
    if not isinstance(uses, str) or not uses.lower().startswith("azure/login@"):
        return False
    given = step.get("with") or {}
    return isinstance(given, dict) and "client-id" in given and not ({"client-secret", "creds"} & set(given))


class _Steps:
    """One job's (or composite action's) steps: what each sets, and the findings on the way."""

    def __init__(self, path: Path, parser: argparse.ArgumentParser) -> None:
        self.path, self.file, self.parser = path, str(path), parser
        self.known: dict[str, set[str] | None] = {}
        self.findings: list[Finding] = []
        self.oidc = False

    def check_refs(self, obj: Any, where: Any, *, earlier_only: bool = True) -> None:
        for text in strings(obj):
            for step_id, name in _STEP_REF.findall(text):
                line = line_of(text, default=line_of(where))
                if step_id not in self.known:
                    self.findings.append(Finding(
                        "CI003", self.file, line,
                        f"`steps.{step_id}.outputs.{name}`: no {'earlier ' if earlier_only else ''}step has id"
                        f" `{step_id}`", "Give the step that sets the output `id: " + step_id + "`."))
                    continue
                outputs = self.known[step_id]
                if outputs is not None and name.lower() not in {o.lower() for o in outputs}:
                    self.findings.append(Finding(
                        "CI003", self.file, line,
                        f"`steps.{step_id}.outputs.{name}`: step `{step_id}` sets no output `{name}`"
                        f" (it sets: {', '.join(sorted(outputs)) or 'none'})",
                        "Read the name the step writes (with several --asset, `{asset}_codeVersion`)."))

    def add(self, step: Any) -> None:
        if not isinstance(step, dict):
            return
        self.check_refs(step, step)
        outputs: set[str] | None = set()
        run = step.get("run")
        if isinstance(run, str):
            script, found = analyse(run, line_of(run), self.parser, self.file)
            self.findings += found
            outputs = script.outputs
            if any(c.argv[:2] == ("firewall", "close") for c in script.commands) and not _always(step.get("if")):
                self.findings.append(Finding(
                    "CI002", self.file, line_of(step),
                    "the firewall close step runs only when every earlier step succeeded: a failed or cancelled"
                    " job leaves the IP rule open", "Add `if: always()` to the close step."))
        uses = step.get("uses")
        if isinstance(uses, str):
            outputs = None
            if _is_oidc_login(step):
                self.oidc = True
            if uses.startswith("./"):
                action = _local_action(self.path, uses)
                if action is not None:
                    declared = action.get("outputs")
                    outputs = set(declared) if isinstance(declared, dict) else set()
                    runs = action.get("runs")
                    steps = runs.get("steps") if isinstance(runs, dict) else None
                    self.oidc = self.oidc or any(_is_oidc_login(s) for s in _list(steps))
        for section in ("env", "with"):
            for key, value in version_entries(step.get(section)):
                self.findings.append(build_id_finding(self.file, line_of(step.get(section), key),
                                                      f"`{key}: {value}`"))
        if isinstance(step.get("id"), str):
            self.known[step["id"]] = outputs


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _has_id_token(perms: Any) -> bool:
    if perms == "write-all":
        return True
    return isinstance(perms, dict) and perms.get("id-token") == "write"


def lint(path: Path, doc: dict[str, Any], parser: argparse.ArgumentParser) -> list[Finding]:
    if isinstance(doc.get("runs"), dict):
        steps = _Steps(path, parser)
        for step in _list(doc["runs"].get("steps")):
            steps.add(step)
        steps.check_refs(_dict(doc.get("outputs")), doc, earlier_only=False)
        return steps.findings
    file = str(path)
    findings: list[Finding] = []
    jobs = _dict(doc.get("jobs"))
    # A reusable-workflow job (`uses:`) declares its outputs in the called workflow: unknown here.
    declared = {name: {str(k).lower() for k in _dict(job.get("outputs"))}
                for name, job in jobs.items() if isinstance(job, dict) and "uses" not in job}
    for name, job in jobs.items():
        if not isinstance(job, dict):
            continue
        steps = _Steps(path, parser)
        for step in _list(job.get("steps")):
            steps.add(step)
        steps.check_refs(_dict(job.get("outputs")), job, earlier_only=False)
        findings += steps.findings
        for key, value in version_entries(job.get("env")):
            findings.append(build_id_finding(file, line_of(job.get("env"), key), f"`{key}: {value}`"))
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else _list(needs)
        for text in strings({k: v for k, v in job.items() if k != "outputs"}):
            for other, output in _NEEDS_REF.findall(text):
                line = line_of(text, default=line_of(job))
                if other not in needs:
                    findings.append(Finding("CI003", file, line,
                                            f"`needs.{other}.outputs.{output}` is empty: job `{name}` does not need"
                                            f" `{other}`", f"Add `{other}` to `needs:` of job `{name}`."))
                elif other in declared and output.lower() not in declared[other]:
                    findings.append(Finding("CI003", file, line,
                                            f"`needs.{other}.outputs.{output}`: job `{other}` declares no output"
                                            f" `{output}`", f"Declare it under `outputs:` of job `{other}`."))
        if steps.oidc and not _has_id_token(job.get("permissions", doc.get("permissions"))):
            findings.append(Finding(
                "CI005", file, line_of(jobs, name),
                f"job `{name}` logs in with OIDC (azure/login with client-id, no secret) but has no"
                " `id-token: write` permission: the login fails", "Add `permissions: {id-token: write, contents: read}`"
                " to the workflow or the job."))
    return findings
