"""Just enough of the GitHub runner and the Azure Pipelines agent to run a quick start's steps for real.

GitHub: a job's steps; `actions/checkout` stands for the repository already in place; the cicd-tools action reference
is resolved to this checkout's action.yml (composite: its `run:` steps execute with their evaluated `env:`, as the
runner does, `bash --noprofile --norc -eo pipefail`; its `uses:` steps, setup-python and cache, are the interpreter
and cache already here). Expressions are evaluated as far as action.yml and the quick start use them.
Azure DevOps: `template: x.yml@cicd-tools` resolved to this checkout, template parameters expanded, `checkout`
steps placed in the workspace, `bash` and `AzureCLI@2` scripts run with their `env:` (macros substituted) plus what
the task itself sets; `UsePythonVersion@0` is the interpreter already here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cicd_tools.ci import parse_github_output_file

REPO = Path(__file__).resolve().parents[2]
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_LITERAL = re.compile(r"('(?:[^']|'')*')")
_CONTEXT = re.compile(r"\b(inputs|env|steps|runner|vars|github|parameters)((?:\.[\w-]+)+)")


@dataclass
class StepRun:
    name: str
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str] = field(default_factory=dict)


def _lookup(ctx: Mapping[str, Any], dotted: str) -> Any:
    value: Any = ctx
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else value


def evaluate(expr: str, ctx: Mapping[str, Any]) -> Any:
    """One GitHub expression: contexts, string literals, ==, !=, !, &&, ||, always(), contains(), fromJSON()."""
    parts = []
    for piece in _LITERAL.split(expr):
        if _LITERAL.fullmatch(piece):
            parts.append(repr(piece[1:-1].replace("''", "'")))
            continue
        piece = _CONTEXT.sub(lambda m: f"_ctx({m.group(1) + m.group(2)!r})", piece)
        piece = piece.replace("&&", " and ").replace("||", " or ")
        piece = re.sub(r"!(?!=)", " not ", piece)
        parts.append(piece)
    names = {"_ctx": lambda d: _lookup(ctx, d), "always": lambda: True, "success": lambda: True,
             "contains": lambda seq, item: item in seq, "fromJSON": json.loads, "true": True, "false": False}
    return eval("".join(parts), {"__builtins__": {}}, names)  # the expressions of files in this repository


def interpolate(text: str, ctx: Mapping[str, Any]) -> str:
    return _EXPR.sub(lambda m: str(evaluate(m.group(1), ctx)), text)


def _bash(name: str, script: str, env: Mapping[str, str], cwd: Path, flags: tuple[str, ...]) -> StepRun:
    done = subprocess.run(["bash", "--noprofile", "--norc", *flags, "-c", script], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)
    return StepRun(name, done.returncode, done.stdout, done.stderr)


@dataclass
class GitHubJob:
    """One job of a workflow on this machine: ``base_env`` is the runner's environment, ``vars`` the repository's."""

    workspace: Path
    base_env: dict[str, str]
    vars: dict[str, str]
    action_ref: str
    runs: list[StepRun] = field(default_factory=list)
    skipped_uses: list[str] = field(default_factory=list)

    def run(self, workflow: str, job: str) -> dict[str, dict[str, str]]:
        doc = yaml.safe_load(workflow)
        spec = doc["jobs"][job]
        ctx: dict[str, Any] = {"vars": self.vars, "runner": {"temp": self.base_env["RUNNER_TEMP"], "os": "Linux"},
                               "github": {"workspace": str(self.workspace)}, "steps": {}}
        job_env = {**{k: interpolate(str(v), ctx) for k, v in (doc.get("env") or {}).items()},
                   **{k: interpolate(str(v), ctx) for k, v in (spec.get("env") or {}).items()}}
        ctx["env"] = job_env
        outputs: dict[str, dict[str, str]] = {}
        for i, step in enumerate(spec["steps"]):
            uses = step.get("uses", "")
            given = {k: interpolate(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            if uses.startswith("actions/checkout@"):
                assert given.get("persist-credentials") == "False", "checkout must not persist credentials"
                continue
            if uses == self.action_ref:
                outputs[step.get("id", str(i))] = self.composite(REPO / "action.yml", given, job_env)
            else:
                raise AssertionError(f"the quick start has a step this runner does not know: {step}")
        return outputs

    def composite(self, action: Path, given: Mapping[str, str], job_env: Mapping[str, str]) -> dict[str, str]:
        doc = yaml.safe_load(action.read_text())
        inputs = {name: given.get(name, spec.get("default", "")) for name, spec in doc["inputs"].items()}
        assert set(given) <= set(inputs), f"unknown inputs {set(given) - set(inputs)}"
        steps: dict[str, dict[str, Any]] = {}
        ctx = {"inputs": inputs, "env": job_env, "steps": steps, "github": {"action_path": str(REPO)},
               "runner": {"temp": self.base_env["RUNNER_TEMP"], "os": "Linux"}}
        for i, step in enumerate(doc["runs"]["steps"]):
            sid = step.get("id", f"step{i}")
            if "if" in step and not evaluate(str(step["if"]), ctx):
                continue
            if "uses" in step:
                self.skipped_uses.append(step["uses"].split("@")[0])
                steps[sid] = {"outputs": {"python-version": "3.11"}}
                continue
            assert "${{" not in step["run"], f"{sid}: an expression inside run:"
            out_file = Path(self.base_env["RUNNER_TEMP"]) / f"output-{len(self.runs)}"
            out_file.write_text("")
            env = {**self.base_env, **job_env, "GITHUB_OUTPUT": str(out_file), "GITHUB_ACTION_PATH": str(REPO),
                   **{k: interpolate(str(v), ctx) for k, v in (step.get("env") or {}).items()}}
            result = _bash(sid, step["run"], env, self.workspace, ("-eo", "pipefail"))
            result.outputs = parse_github_output_file(out_file.read_text())
            self.runs.append(result)
            assert result.returncode == 0, f"step {sid} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            steps[sid] = {"outputs": result.outputs}
        return {name: str(evaluate(_EXPR.fullmatch(spec["value"]).group(1), ctx))  # type: ignore[union-attr]
                for name, spec in doc["outputs"].items()}


_MACRO = re.compile(r"\$\(([\w.]+)\)")
_TEMPLATE_EXPR = re.compile(r"\$\{\{\s*(?:parameters\.([\w-]+)|join\('([^']*)',\s*parameters\.([\w-]+)\))\s*\}\}")


def _expand(obj: Any, params: Mapping[str, Any]) -> Any:
    """Template expressions of the shipped templates: ``${{ parameters.x }}`` and ``${{ join('s', parameters.x) }}``."""
    if isinstance(obj, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return str(params[m.group(1)])
            return m.group(2).join(str(v) for v in params[m.group(3)])
        text = _TEMPLATE_EXPR.sub(sub, obj)
        assert "${{" not in text, f"a template expression this agent does not know: {text}"
        return text
    if isinstance(obj, dict):
        return {k: _expand(v, params) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v, params) for v in obj]
    return obj


@dataclass
class AzureJob:
    """One job on this machine. ``variables``: predefined variables for macros; ``task_env``: what AzureCLI@2 sets
    (the service connection's AZURESUBSCRIPTION_*), ``agent_env``: the agent's environment."""

    workspace: Path
    agent_env: dict[str, str]
    variables: dict[str, str]
    task_env: dict[str, str]
    resource: str = "cicd-tools"
    runs: list[StepRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)  # `workspaceRepo: true` moves it to that checkout

    def steps(self, items: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items:
            ref = item.get("template")
            if ref is None:
                out.append(item)
                continue
            path, _, alias = ref.partition("@")
            assert alias == self.resource, f"{ref}: not from the {self.resource} repository resource"
            doc = yaml.safe_load((REPO / path).read_text())
            params = {p["name"]: p.get("default") for p in doc.get("parameters", [])}
            params.update(item.get("parameters") or {})
            assert all(v is not None for v in params.values()), f"{ref}: a required parameter is missing"
            out += self.steps(_expand(doc["steps"], params))
        return out

    def run(self, pipeline: str) -> list[StepRun]:
        doc = yaml.safe_load(pipeline)
        failed = False
        for step in self.steps(doc["steps"]):
            condition = str(step.get("condition", "succeeded()")).replace(" ", "")
            if failed and condition != "always()":
                continue
            if "checkout" in step:
                self._checkout(step)
                continue
            if "publish" in step:
                assert Path(self._macros(step["publish"])).is_file(), f"nothing to publish at {step['publish']}"
                continue
            task = step.get("task", "")
            if task.startswith("UsePythonVersion@"):
                self.skipped.append(task)
                continue
            if "bash" in step:
                script, extra = step["bash"], {}
            elif task == "AzureCLI@2":
                inputs = step["inputs"]
                assert (inputs["scriptType"], inputs["scriptLocation"]) == ("bash", "inlineScript")
                script, extra = inputs["inlineScript"], self.task_env
            else:
                raise AssertionError(f"a step this agent does not know: {step}")
            env = {**self.agent_env, **extra,
                   **{k: self._macros(str(v)) for k, v in (step.get("env") or {}).items()}}
            result = _bash(step.get("displayName", task), self._macros(script), env, self.cwd, ())
            self.runs.append(result)
            failed = failed or result.returncode != 0
        return self.runs

    def _checkout(self, step: dict[str, Any]) -> None:
        target = self.workspace / step["path"]
        if step["checkout"] == "self":
            assert target.is_dir(), "the user repository is laid out at the self checkout path"
            if step.get("workspaceRepo") == "true":
                self.cwd = target
        else:
            assert step["checkout"] == self.resource
            target.symlink_to(REPO, target_is_directory=True)

    def _macros(self, text: str) -> str:
        return _MACRO.sub(lambda m: self.variables.get(m.group(1), m.group(0)), text)


def install_venv(root: Path, python: str) -> Path:
    """A venv without pip whose interpreter also sees this environment's packages (a .pth line): the action's
    install step then installs cicd-tools itself into it, from this checkout, and resolves the rest from here."""
    import sysconfig

    subprocess.run([python, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next(root.glob("lib/python3*/site-packages"))
    (site / "shared-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin"


def runner_path(bin_dir: Path) -> str:
    return os.pathsep.join([str(bin_dir), *[p for p in os.environ.get("PATH", "").split(os.pathsep)
                                             if p and ".venv" not in p]])
