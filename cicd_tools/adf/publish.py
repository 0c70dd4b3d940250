"""Publish a factory in ADF Git layout through ARM, and compare a repo with what is published.

Order (what a resource references exists first): managed virtual networks, integration runtimes, managed
private endpoints, linked services, datasets, pipelines (an ExecutePipeline child before its parent),
triggers. Running triggers are stopped before and restarted after (only those that were running). Only
resources whose ``properties`` differ are PUT; ``delete_orphans`` removes published resources the repo lacks.
Fields the service fills in (a private endpoint's ``connectionState``, a trigger's ``runtimeState``...) are
not compared.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cicd_tools.adf.client import KINDS, ArmCalls, FactoryApi, FactoryRef
from cicd_tools.support.errors import UsageError
from cicd_tools.support.walk import Skipped, classify_file, inside

log = logging.getLogger(__name__)

# Git-layout folder of each kind (managed private endpoints live under managedVirtualNetwork/<vnet>/).
FOLDERS = {
    "managedVirtualNetworks": "managedVirtualNetwork",
    "integrationRuntimes": "integrationRuntime",
    "linkedServices": "linkedService",
    "datasets": "dataset",
    "pipelines": "pipeline",
    "triggers": "trigger",
}
SERVICE_FIELDS = {
    "managedPrivateEndpoints": ("connectionState", "fqdns", "provisioningState", "isReserved"),
    "managedVirtualNetworks": ("vNetId", "alias"),
    "triggers": ("runtimeState",),
    "integrationRuntimes": ("state",),
}


class FactoryFolderError(UsageError):
    """The factory folder cannot be read (missing, not Git layout, bad JSON)."""

    default_hint = "Pass the factory's Git folder (it holds pipeline/, factory/...); `cicd-tools adf lint` checks it."


@dataclass
class RepoFactory:
    """What a factory folder declares: resources per kind (name -> properties) and global parameters."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    global_parameters: dict[str, Any] | None = None


def _read(path: Path) -> dict[str, Any]:
    from cicd_tools.support.bounded import load_json_bounded

    try:
        doc = load_json_bounded(path, what="ADF file")
    except (OSError, UnicodeDecodeError) as err:
        raise FactoryFolderError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise FactoryFolderError(f"{path}: not valid JSON: {err.msg} (line {err.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("properties"), dict):
        raise FactoryFolderError(f"{path}: not an ADF resource (no 'properties' object)")
    return doc


def _files(root: Path, folder: Path) -> list[Path]:
    """``folder/*.json`` under the walk policy (cicd_tools/support/walk.py): what deploy uploads stays in ``root``.

    A file or folder resolving outside the factory folder, a FIFO, socket or device is refused (a FIFO would
    block the read forever; a link out of the folder would publish a file of this machine to the factory).
    """
    boundary = os.path.realpath(root)
    if folder.exists() and not inside(os.path.realpath(folder), boundary):
        raise FactoryFolderError(f"{folder} resolves to {os.path.realpath(folder)}, outside the factory folder {root}",
                                 hint="Keep the factory's resources inside the folder `adf deploy` is given.")
    found = []
    for path in sorted(folder.glob("*.json")):
        entry = classify_file(str(path), path.relative_to(root).as_posix(), boundary)
        if isinstance(entry, Skipped):
            raise FactoryFolderError(f"{root}: {entry}",
                                     hint="Replace it with a regular JSON file inside the factory folder.")
        found.append(path)
    return found


def load_repo(root: Path, *, global_overrides: Mapping[str, Any] | None = None) -> RepoFactory:
    """Read a factory folder. Raises: FactoryFolderError."""
    if not root.is_dir():
        raise FactoryFolderError(f"{root}: no such folder")
    if not (root / "pipeline").is_dir():
        raise FactoryFolderError(f"{root} is not a factory folder in ADF Git layout (no pipeline/ inside)")
    repo = RepoFactory()
    for kind, folder in FOLDERS.items():
        for path in _files(root, root / folder):
            doc = _read(path)
            repo.resources[kind][str(doc.get("name") or path.stem)] = doc["properties"]
    for vnet in sorted(p for p in (root / "managedVirtualNetwork").glob("*") if p.is_dir()):
        for path in _files(root, vnet / "managedPrivateEndpoint"):
            doc = _read(path)
            repo.resources["managedPrivateEndpoints"][str(doc.get("name") or path.stem)] = doc["properties"]
    for path in _files(root, root / "factory"):
        gp = _read(path)["properties"].get("globalParameters")
        if isinstance(gp, dict):
            repo.global_parameters = {**(repo.global_parameters or {}), **gp}
    if global_overrides:
        repo.global_parameters = apply_global_overrides(repo.global_parameters or {}, global_overrides)
    return repo


def apply_global_overrides(declared: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``--global k=v`` over the factory file's global parameters, typed like the declared one. Raises: UsageError."""
    from cicd_tools.adf.run_rules import coerce_parameter

    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in declared.items()}
    for name, value in overrides.items():
        spec = out.get(name)
        if not isinstance(spec, dict):
            raise UsageError(f"--global {name}: the factory declares no global parameter of that name",
                             hint=f"Declared: {', '.join(sorted(out)) or 'none'}.")
        spec["value"] = coerce_parameter(value, str(spec.get("type", "String")))
    return out


def _comparable(kind: str, props: Any) -> Any:
    if not isinstance(props, Mapping):
        return props
    return {k: v for k, v in props.items() if k not in SERVICE_FIELDS.get(kind, ())}


def json_diff(repo: Any, published: Any, path: str = "$") -> list[dict[str, Any]]:
    """Where two JSON values differ: ``[{"path", "repo", "published"}]`` (missing side: absent key)."""
    if isinstance(repo, Mapping) and isinstance(published, Mapping):
        out: list[dict[str, Any]] = []
        for key in sorted(set(repo) | set(published)):
            sub = f"{path}.{key}"
            if key not in published:
                out.append({"path": sub, "repo": repo[key]})
            elif key not in repo:
                out.append({"path": sub, "published": published[key]})
            else:
                out.extend(json_diff(repo[key], published[key], sub))
        return out
    if isinstance(repo, list) and isinstance(published, list) and len(repo) == len(published):
        pairs = enumerate(zip(repo, published, strict=True))
        return [d for i, (a, b) in pairs for d in json_diff(a, b, f"{path}[{i}]")]
    return [] if repo == published else [{"path": path, "repo": repo, "published": published}]


@dataclass
class Published:
    """What the factory has now: resources per kind, global parameters, trigger states."""

    resources: dict[str, dict[str, dict[str, Any]]]
    global_parameters: dict[str, Any]
    trigger_states: dict[str, str]


def read_published(api: FactoryApi, calls: ArmCalls, ref: FactoryRef) -> Published:
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    states: dict[str, str] = {}
    for kind in KINDS:
        items = calls(f"list {kind} of {ref.name}", functools.partial(api.list_resources, ref, kind))
        resources[kind] = {str(i.get("name")): dict(i.get("properties") or {}) for i in items}
        if kind == "triggers":
            states = {str(i.get("name")): str((i.get("properties") or {}).get("runtimeState", "Stopped"))
                      for i in items}
    factory = calls(f"get factory {ref.name}", lambda: api.get_factory(ref))
    gp = (factory.get("properties") or {}).get("globalParameters") or {}
    return Published(resources, dict(gp), states)


@dataclass(frozen=True)
class Change:
    """One resource that differs: ``action`` add | change | orphan; ``differences`` its JSON diff."""

    kind: str
    name: str
    action: str
    differences: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "differences": list(self.differences)}


def compare(repo: RepoFactory, published: Published) -> list[Change]:
    """Per resource, what differs between the repo and the published factory (global parameters as ``factory``)."""
    changes: list[Change] = []
    for kind in KINDS:
        mine, theirs = repo.resources[kind], published.resources.get(kind, {})
        theirs_ci = {k.lower(): k for k in theirs}
        for name, props in mine.items():
            other = theirs_ci.get(name.lower())
            if other is None:
                changes.append(Change(kind, name, "add"))
                continue
            diff = json_diff(_comparable(kind, props), _comparable(kind, theirs[other]))
            if diff:
                changes.append(Change(kind, name, "change", tuple(diff)))
        mine_ci = {k.lower() for k in mine}
        for name in theirs:
            if name.lower() not in mine_ci:
                changes.append(Change(kind, name, "orphan"))
    if repo.global_parameters is not None:
        diff = json_diff(_typed_globals(repo.global_parameters), _typed_globals(published.global_parameters),
                         "$.globalParameters")
        if diff:
            changes.append(Change("factory", "globalParameters", "change", tuple(diff)))
    return changes


GLOBAL_TYPES = ("Object", "String", "Int", "Float", "Bool", "Array")


def _typed_globals(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Global parameters with the type spelled as the service answers it ("int" is stored as "Int":
    example GlobalParameters_Create.json), so a lower-case type in the repo is not a difference."""
    out: dict[str, Any] = {}
    for name, spec in parameters.items():
        if isinstance(spec, Mapping) and isinstance(spec.get("type"), str):
            kind = next((t for t in GLOBAL_TYPES if t.lower() == spec["type"].lower()), spec["type"])
            spec = {**spec, "type": kind}
        out[name] = spec
    return out


def pipeline_order(pipelines: Mapping[str, Any]) -> list[str]:
    """Pipeline names with every ExecutePipeline child before its parent (cycles keep file order)."""
    def children(props: Any) -> set[str]:
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                if value.get("type") == "PipelineReference" and isinstance(value.get("referenceName"), str):
                    found.add(value["referenceName"])
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(props)
        return found

    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting or name not in pipelines:
            return
        visiting.add(name)
        for child in sorted(children(pipelines[name])):
            visit(child)
        visiting.discard(name)
        order.append(name)

    for name in pipelines:
        visit(name)
    return order


@dataclass(frozen=True)
class Step:
    """One call of a deployment plan."""

    action: str  # stop-trigger | put | put-globals | delete | start-trigger
    kind: str
    name: str

    def describe(self) -> str:
        return f"{self.action:<14} {self.kind}/{self.name}" if self.kind else f"{self.action:<14} {self.name}"


def plan(repo: RepoFactory, published: Published, *, delete_orphans: bool = False) -> list[Step]:
    changes = compare(repo, published)
    todo = {(c.kind, c.name) for c in changes if c.action in ("add", "change")}
    orphans = [c for c in changes if c.action == "orphan"] if delete_orphans else []
    running = [n for n, s in published.trigger_states.items() if s == "Started"]
    touches = bool(todo) or bool(orphans)
    steps: list[Step] = [Step("stop-trigger", "triggers", n) for n in running] if touches else []
    if ("factory", "globalParameters") in todo:
        steps.append(Step("put-globals", "factory", "globalParameters"))
    for kind in KINDS:
        names = pipeline_order(repo.resources[kind]) if kind == "pipelines" else list(repo.resources[kind])
        steps.extend(Step("put", kind, n) for n in names if (kind, n) in todo)
    for kind in reversed(KINDS):
        steps.extend(Step("delete", kind, c.name) for c in orphans if c.kind == kind)
    if touches:
        gone = {c.name for c in orphans if c.kind == "triggers"}
        restart = [n for n in running if n not in gone]
        wanted = [n for n, p in repo.resources["triggers"].items()
                  if str(p.get("runtimeState")) == "Started" and n not in restart]
        steps.extend(Step("start-trigger", "triggers", n) for n in [*restart, *wanted])
    return steps


def _apply(api: FactoryApi, ref: FactoryRef, repo: RepoFactory, step: Step) -> None:
    if step.action in ("stop-trigger", "start-trigger"):
        api.set_trigger(ref, step.name, started=step.action == "start-trigger")
    elif step.action == "put-globals":
        api.put_global_parameters(ref, repo.global_parameters or {})
    elif step.action == "put":
        api.put_resource(ref, step.kind, step.name, {"properties": repo.resources[step.kind][step.name]})
    elif step.action == "delete":
        api.delete_resource(ref, step.kind, step.name)


def deploy(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, repo: RepoFactory, steps: list[Step],
           *, done: Callable[[Step], None] | None = None) -> None:
    """Run the plan in order. Raises: CicdError on the first failing call (the steps done so far stay done)."""
    for step in steps:
        calls(f"{step.action} {step.kind}/{step.name}", functools.partial(_apply, api, ref, repo, step))
        log.info("  %s", step.describe())
        if done is not None:
            done(step)
