"""Azure DevOps pipelines and templates: service connections, condition: always(), output variables."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from cicd_tools.cilint.findings import Finding
from cicd_tools.cilint.github import strings
from cicd_tools.cilint.scripts import analyse, build_id_finding, version_entries
from cicd_tools.cilint.yamlsrc import YMap, YStr, line_of, load_yaml

SERVICE_CONNECTION_INPUTS = {
    "azuresubscription", "connectedservicenamearm", "azureresourcemanagerconnection", "connectedservicename",
    "azureserviceconnection", "serviceconnection", "kubernetesserviceconnection",
}
SCRIPT_KEYS = ("script", "bash", "pwsh", "powershell")
PREDEFINED = {"build", "system", "agent", "pipeline", "release", "environment", "resources", "strategy", "checks",
              "tf", "common", "deployment", "task", "variables"}
_PARAM = re.compile(r"\$\{\{\s*parameters\.([\w-]+)\s*\}\}")
_MACRO = re.compile(r"\$\(([A-Za-z_][\w-]*)\.([\w-]+)\)")
_DEPENDENCY = re.compile(r"dependencies\.([\w-]+)\.outputs\[\s*'([\w.-]+)'\s*\]")
_STAGE_DEPENDENCY = re.compile(r"stageDependencies\.([\w-]+)\.([\w-]+)\.outputs\[\s*'([\w.-]+)'\s*\]")
_COMPILE_VAR = re.compile(r"\$\{\{\s*variables\.([\w.-]+)\s*\}\}|\$\{\{\s*variables\[\s*'([\w.-]+)'\s*\]\s*\}\}")


def _substitute(obj: Any, params: dict[str, Any]) -> Any:
    """``${{ parameters.x }}`` replaced by the caller's value (or the template's default); lines kept."""
    if isinstance(obj, str):
        whole = _PARAM.fullmatch(obj.strip())
        if whole and whole.group(1) in params and not isinstance(params[whole.group(1)], str):
            return params[whole.group(1)]
        text = _PARAM.sub(lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0), obj)
        out = YStr(text)
        out.line = line_of(obj)
        return out
    if isinstance(obj, dict):
        mapped = YMap({k: _substitute(v, params) for k, v in obj.items()})
        mapped.line, mapped.key_lines = line_of(obj), getattr(obj, "key_lines", {})
        return mapped
    if isinstance(obj, list):
        return [_substitute(v, params) for v in obj]
    return obj


def _template_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    declared = doc.get("parameters") or []
    if isinstance(declared, dict):
        return dict(declared)
    if not isinstance(declared, list):
        return {}
    return {p["name"]: p.get("default") for p in declared if isinstance(p, dict) and "name" in p and "default" in p}


def expand(items: Any, key: str, base: Path) -> tuple[list[tuple[Path, Any]], bool]:
    """Items of a ``steps``/``jobs`` list with local ``- template:`` entries spliced in; and whether all resolved."""
    out: list[tuple[Path, Any]] = []
    complete = True
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("template"), str) and key in ("steps", "jobs"):
            ref = item["template"]
            target = (base.parent / ref) if not ref.startswith("/") else Path(ref.lstrip("/"))
            if "@" in ref or "$" in ref or not target.is_file():
                complete = False
                continue
            doc = load_yaml(target)
            if not isinstance(doc, dict):
                complete = False
                continue
            given = item.get("parameters")
            params = {**_template_defaults(doc), **(given if isinstance(given, dict) else {})}
            inner, ok = expand(_substitute(doc.get(key) or [], params), key, target)
            out += inner
            complete = complete and ok
        else:
            out.append((base, item))
    return out, complete


def _inline_variables(doc: dict[str, Any]) -> tuple[set[str], bool]:
    """Variables defined inline (name → value), and whether any variable group is linked."""
    names: set[str] = set()
    groups = False
    variables = doc.get("variables") or []
    if isinstance(variables, dict):
        return {str(k) for k in variables}, False
    for entry in variables if isinstance(variables, list) else []:
        if isinstance(entry, dict):
            if "group" in entry:
                groups = True
            elif "name" in entry:
                names.add(str(entry["name"]))
    return names, groups


class _Job:
    def __init__(self, name: str, job: dict[str, Any], stage: str | None, file: Path) -> None:
        self.name, self.job, self.stage, self.file = name, job, stage, file
        self.steps: list[tuple[Path, Any]] = []
        self.complete = True
        self.outputs: dict[str, set[str] | None] = {}  # step name -> outputs
        self.variables, groups = _inline_variables(job)
        self.has_groups = groups


class _Linter:
    def __init__(self, path: Path, doc: dict[str, Any], parser: argparse.ArgumentParser) -> None:
        self.path, self.doc, self.parser = path, doc, parser
        self.findings: list[Finding] = []
        self.inline_vars, self.groups = _inline_variables(doc)
        self.is_template = "parameters" in doc and not any(k in doc for k in ("trigger", "pool", "schedules", "pr"))

    def jobs(self) -> list[_Job]:
        found: list[_Job] = []
        if "steps" in self.doc:
            found.append(_Job("(steps)", self.doc, None, self.path))
        lists: list[tuple[str | None, Any, Path]] = [(None, self.doc.get("jobs"), self.path)]
        stages = self.doc.get("stages")
        for stage in stages if isinstance(stages, list) else []:
            if isinstance(stage, dict):
                lists.append((str(stage.get("stage")), stage.get("jobs"), self.path))
        for stage_name, items, base in lists:
            expanded, _ = expand(items, "jobs", base)
            for file, job in expanded:
                if isinstance(job, dict):
                    found.append(_Job(str(job.get("job") or job.get("deployment") or "?"), job, stage_name, file))
        for job in found:
            job.steps, job.complete = expand(job.job.get("steps"), "steps", job.file)
            job.complete = job.complete and not self.is_template
        return found

    def lint(self) -> list[Finding]:
        jobs = self.jobs()
        for job in jobs:
            self._steps(job)
        by_name = {(j.stage, j.name): j for j in jobs}
        for job in jobs:
            self._dependencies(job, by_name)
        for key, value in version_entries(self.doc.get("variables") if isinstance(self.doc.get("variables"), dict)
                                          else {}):
            self.findings.append(build_id_finding(str(self.path), line_of(self.doc["variables"], key),
                                                  f"`{key}: {value}`"))
        for entry in self.doc.get("variables") or [] if isinstance(self.doc.get("variables"), list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("value"), str):
                for key, value in version_entries({entry["name"]: entry["value"]}):
                    self.findings.append(build_id_finding(str(self.path), line_of(entry), f"`{key}: {value}`"))
        return self.findings

    def _script(self, step: dict[str, Any]) -> Any:
        for key in SCRIPT_KEYS:
            if isinstance(step.get(key), str):
                return step[key]
        inputs = step.get("inputs") or {}
        if isinstance(step.get("task"), str) and isinstance(inputs, dict):
            for key in ("inlineScript", "script", "Script"):
                if isinstance(inputs.get(key), str):
                    return inputs[key]
        return None

    def _steps(self, job: _Job) -> None:
        for file, step in job.steps:
            if not isinstance(step, dict):
                continue
            self._macro_refs(job, file, step)
            outputs: set[str] | None = set()
            script = self._script(step)
            if script is not None:
                parsed, found = analyse(script, line_of(script), self.parser, str(file))
                self.findings += found
                outputs = parsed.outputs
                closes = any(c.argv[:2] == ("firewall", "close") for c in parsed.commands)
                if closes and "always()" not in str(step.get("condition") or "").replace(" ", ""):
                    self.findings.append(Finding(
                        "CI002", str(file), line_of(step),
                        "the firewall close step runs only when every earlier step succeeded: a failed or cancelled"
                        " job leaves the IP rule open", "Add `condition: always()` to the close step."))
            self._service_connection(file, step)
            for section in ("env", "inputs"):
                for key, value in version_entries(step.get(section)):
                    self.findings.append(build_id_finding(str(file), line_of(step.get(section), key),
                                                          f"`{key}: {value}`"))
            if isinstance(step.get("name"), str):
                job.outputs[step["name"]] = outputs

    def _macro_refs(self, job: _Job, file: Path, step: dict[str, Any]) -> None:
        for text in strings(step):
            for step_name, output in _MACRO.findall(text):
                name = f"{step_name}.{output}"
                if step_name.lower() in PREDEFINED or name in self.inline_vars or name in job.variables:
                    continue
                if (self.groups or job.has_groups) and step_name.lower() not in {k.lower() for k in job.outputs}:
                    continue  # a variable group may define a dotted name
                self._check_output(job, step_name, output, str(file), line_of(text, default=line_of(step)),
                                   f"$({step_name}.{output})", earlier=True)

    def _check_output(self, job: _Job, step_name: str, output: str, file: str, line: int, ref: str,
                      *, earlier: bool) -> None:
        known = {k.lower(): v for k, v in job.outputs.items()}
        if step_name.lower() not in known:
            if job.complete:
                self.findings.append(Finding(
                    "CI003", file, line,
                    f"{ref}: no {'earlier ' if earlier else ''}step in job `{job.name}` is named `{step_name}`",
                    f"Give the step that sets the output `name: {step_name}`."))
            return
        outputs = known[step_name.lower()]
        if outputs is not None and output.lower() not in {o.lower() for o in outputs}:
            self.findings.append(Finding(
                "CI003", file, line,
                f"{ref}: step `{step_name}` sets no output `{output}`"
                f" (it sets: {', '.join(sorted(outputs)) or 'none'})",
                "Read the name the step writes (with several --asset, `{asset}_codeVersion`)."))

    def _service_connection(self, file: Path, step: dict[str, Any]) -> None:
        inputs = step.get("inputs")
        if not isinstance(inputs, dict):
            return
        for key, value in inputs.items():
            if str(key).lower() not in SERVICE_CONNECTION_INPUTS or not isinstance(value, str):
                continue
            runtime = "$(" in value or "$[" in value
            from_group = [a or b for a, b in _COMPILE_VAR.findall(value) if (a or b) not in self.inline_vars]
            if runtime or (from_group and self.groups):
                self.findings.append(Finding(
                    "CI004", str(file), line_of(inputs, key),
                    f"`{key}: {value}`: service connections are resolved when the run is queued, before runtime"
                    " variables and variable groups exist (\"could not be found\")",
                    "Pass it as a template/runtime parameter (`${{ parameters.serviceConnection }}`) or a literal."))

    def _dependencies(self, job: _Job, by_name: dict[tuple[str | None, str], _Job]) -> None:
        sources = {k: v for k, v in job.job.items() if k not in ("steps",)}
        depends = job.job.get("dependsOn") or []
        depends = [depends] if isinstance(depends, str) else depends if isinstance(depends, list) else []
        for text in strings(sources):
            line = line_of(text, default=line_of(job.job))
            for other, ref in _DEPENDENCY.findall(text):
                if f"stageDependencies.{other}" in text:
                    continue
                target = by_name.get((job.stage, other))
                where = f"dependencies.{other}.outputs['{ref}']"
                if target is None:
                    self.findings.append(Finding("CI003", str(job.file), line,
                                                 f"{where}: no job `{other}` in this stage", "Name an existing job."))
                    continue
                if other not in depends:
                    self.findings.append(Finding("CI003", str(job.file), line,
                                                 f"{where} is empty: job `{job.name}` does not depend on `{other}`",
                                                 f"Add `dependsOn: {other}` to job `{job.name}`."))
                parts = ref.split(".")
                if len(parts) == 2:
                    self._check_output(target, parts[0], parts[1], str(job.file), line, where, earlier=False)
            for stage, other, ref in _STAGE_DEPENDENCY.findall(text):
                target = by_name.get((stage, other))
                parts = ref.split(".")
                if target is not None and len(parts) == 2:
                    self._check_output(target, parts[0], parts[1], str(job.file), line,
                                       f"stageDependencies.{stage}.{other}.outputs['{ref}']", earlier=False)


def lint(path: Path, doc: dict[str, Any], parser: argparse.ArgumentParser) -> list[Finding]:
    return _Linter(path, doc, parser).lint()
