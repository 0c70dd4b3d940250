"""Read ADF pipelines from a factory folder (Git layout), plain pipeline files and ARM templates.

Never raises on odd input: a file that is not JSON, or holds no pipeline, becomes a ``LoadProblem``
the linter reports (rule ADF000 / ADF001).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cicd_tools.adf import jsonpos
from cicd_tools.adf.armnames import readable_resource_name

log = logging.getLogger(__name__)

# Folders of the ADF Git layout; a folder holding ``pipeline/`` is read as a factory.
PIPELINE_DIR = "pipeline"
FACTORY_DIR = "factory"
RUNTIME_DIR = "integrationRuntime"


class SourceFile:
    """One JSON file as read: its text, its parsed document, and a lazily built JSON-path -> line index."""

    def __init__(self, path: Path, text: str, document: Any) -> None:
        self.path = path
        self.text = text
        self.document = document

    @cached_property
    def _lines(self) -> dict[tuple[jsonpos.PathPart, ...], int]:
        return jsonpos.line_index(self.text)

    def line_of(self, json_path: str) -> int | None:
        """The 1-based line where ``json_path`` (or its nearest known ancestor) starts."""
        return jsonpos.line_of(self._lines, json_path)


@dataclass(frozen=True)
class PipelineDoc:
    """One pipeline resource (``{"name", "properties": {"activities", ...}}``) and where it came from."""

    name: str
    resource: Mapping[str, Any]
    source: SourceFile
    base_path: str = "$"  # JSON path of the resource inside its file ("$.resources[3]" in an ARM template)

    @property
    def properties(self) -> Mapping[str, Any]:
        props = self.resource.get("properties")
        return props if isinstance(props, Mapping) else {}


@dataclass(frozen=True)
class LoadProblem:
    """A file that could not be read as ADF JSON (``rule`` ADF000) or held no pipeline (ADF001)."""

    file: Path
    message: str
    rule: str = "ADF000"
    line: int | None = None


@dataclass(frozen=True)
class Factory:
    """What the pipelines of one factory can see: global parameters, sibling pipelines, runtimes.

    ``None`` means "not known" (a single file was read): checks that need it are skipped.
    """

    root: Path | None = None
    global_parameters: Mapping[str, Mapping[str, Any]] | None = None  # name -> {"type", "value"}
    pipelines: Mapping[str, PipelineDoc] = field(default_factory=dict)
    integration_runtimes: frozenset[str] | None = None
    complete: bool = False  # True for a factory folder: every pipeline the factory has is in ``pipelines``

    def global_parameter_values(self) -> dict[str, Any]:
        """Global parameters as the expression engine reads them: name -> value."""
        out: dict[str, Any] = {}
        for name, spec in (self.global_parameters or {}).items():
            out[name] = spec.get("value") if isinstance(spec, Mapping) else spec
        return out


@dataclass(frozen=True)
class LoadedSet:
    """Pipelines read together (one factory folder, or one file) with the factory they belong to."""

    factory: Factory
    pipelines: tuple[PipelineDoc, ...]
    problems: tuple[LoadProblem, ...] = ()


def read_json(path: Path) -> tuple[SourceFile | None, LoadProblem | None]:
    """Read one file; a problem instead of an exception when it is not readable JSON."""
    from cicd_tools.support.bounded import loads_json_bounded, read_text_bounded

    # A FIFO, a device, an oversized or too deeply nested file: InputRefused (a usage error), not a problem.
    try:
        text = read_text_bounded(path, encoding="utf-8-sig", what="ADF file")
    except (OSError, UnicodeDecodeError) as err:
        return None, LoadProblem(path, f"cannot read the file: {err}")
    try:
        document = loads_json_bounded(text, where=f"the ADF file {path}")
    except json.JSONDecodeError as err:
        return None, LoadProblem(
            path, f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})", line=err.lineno
        )
    return SourceFile(path, text, document), None


def _is_pipeline_resource(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    props = obj.get("properties")
    return (
        isinstance(props, Mapping)
        and isinstance(props.get("activities", []), list)
        and ("activities" in props or str(obj.get("type", "")).lower().endswith("pipelines"))
    )


def _arm_pipelines(source: SourceFile) -> tuple[list[PipelineDoc], Mapping[str, Mapping[str, Any]] | None]:
    """Every pipeline resource of an ARM template (nested child resources too), plus factory globals."""
    template = source.document
    found: list[PipelineDoc] = []
    globals_found: dict[str, Mapping[str, Any]] | None = None

    def visit(resources: Any, path: str) -> None:
        nonlocal globals_found
        if not isinstance(resources, list):
            return
        for index, res in enumerate(resources):
            if not isinstance(res, Mapping):
                continue
            res_path = jsonpos.child(path, index)
            rtype = str(res.get("type", "")).lower()
            if rtype.endswith("pipelines") and isinstance(res.get("properties"), Mapping):
                name = readable_resource_name(str(res.get("name", "")), template)
                found.append(PipelineDoc(name or f"resources[{index}]", res, source, res_path))
            elif rtype.endswith("/factories"):
                props = res.get("properties")
                gp = props.get("globalParameters") if isinstance(props, Mapping) else None
                if isinstance(gp, Mapping):
                    globals_found = {**(globals_found or {}), **gp}
            visit(res.get("resources"), jsonpos.child(res_path, "resources"))

    visit(template.get("resources"), "$.resources")
    return found, globals_found


def pipelines_in(source: SourceFile) -> tuple[list[PipelineDoc], Mapping[str, Mapping[str, Any]] | None]:
    """The pipelines a parsed file holds (plain resource, bare properties, or ARM template)."""
    doc = source.document
    if not isinstance(doc, Mapping):
        return [], None
    if isinstance(doc.get("resources"), list) and ("$schema" in doc or "contentVersion" in doc):
        return _arm_pipelines(source)
    if _is_pipeline_resource(doc):
        name = doc.get("name")
        return [PipelineDoc(str(name) if name else source.path.stem, doc, source)], None
    if isinstance(doc.get("activities"), list):  # bare pipeline properties
        return [PipelineDoc(source.path.stem, {"name": source.path.stem, "properties": doc}, source)], None
    return [], None


def load_file(path: Path) -> LoadedSet:
    """One pipeline file or ARM template, linted without a factory (unless the template carries one)."""
    source, problem = read_json(path)
    if source is None:
        return LoadedSet(Factory(), (), (problem,) if problem else ())
    pipelines, globals_found = pipelines_in(source)
    problems: tuple[LoadProblem, ...] = ()
    if not pipelines:
        problems = (LoadProblem(path, "no ADF pipeline in this file", rule="ADF001"),)
    factory = Factory(
        root=None,
        global_parameters=globals_found,
        pipelines={p.name: p for p in pipelines},
    )
    return LoadedSet(factory, tuple(pipelines), problems)


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def load_factory(root: Path) -> LoadedSet:
    """A factory folder in ADF Git layout: ``pipeline/``, ``factory/``, ``integrationRuntime/``..."""
    problems: list[LoadProblem] = []
    globals_found: dict[str, Mapping[str, Any]] = {}
    for path in _json_files(root / FACTORY_DIR):
        source, problem = read_json(path)
        if problem is not None:
            problems.append(problem)
        elif source is not None and isinstance(source.document, Mapping):
            props = source.document.get("properties")
            gp = props.get("globalParameters") if isinstance(props, Mapping) else None
            if isinstance(gp, Mapping):
                globals_found.update(gp)
    runtimes: set[str] = set()
    for path in _json_files(root / RUNTIME_DIR):
        source, problem = read_json(path)
        if problem is not None:
            problems.append(problem)
        elif source is not None and isinstance(source.document, Mapping):
            runtimes.add(str(source.document.get("name") or path.stem))
    pipelines: list[PipelineDoc] = []
    for path in _json_files(root / PIPELINE_DIR):
        source, problem = read_json(path)
        if source is None:
            problems.append(problem or LoadProblem(path, "unreadable"))
            continue
        found, _ = pipelines_in(source)
        if not found:
            problems.append(LoadProblem(path, "no ADF pipeline in this file", rule="ADF001"))
        pipelines.extend(found)
    factory = Factory(
        root=root,
        global_parameters=globals_found,
        pipelines={p.name: p for p in pipelines},
        # Without an integrationRuntime/ folder we cannot tell a typo from a runtime defined elsewhere.
        integration_runtimes=frozenset(runtimes) if (root / RUNTIME_DIR).is_dir() else None,
        complete=True,
    )
    return LoadedSet(factory, tuple(pipelines), tuple(problems))


def is_factory_folder(path: Path) -> bool:
    """True when ``path`` looks like an ADF Git-layout factory root."""
    return path.is_dir() and (path / PIPELINE_DIR).is_dir()


def load_paths(paths: Iterable[Path]) -> list[LoadedSet]:
    """Everything under ``paths``: factory folders as factories, other folders file by file (recursively)."""
    sets: list[LoadedSet] = []
    for path in paths:
        if is_factory_folder(path):
            sets.append(load_factory(path))
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*.json") if p.is_file()):
                sets.append(load_file(file))
        elif path.exists():
            sets.append(load_file(path))
        else:
            sets.append(LoadedSet(Factory(), (), (LoadProblem(path, "no such file or folder"),)))
    return sets


def find_pipeline(loaded: LoadedSet, name: str | None = None) -> PipelineDoc:
    """The pipeline called ``name`` (or the only/first one). Raises: LookupError when there is none."""
    if name is None:
        if not loaded.pipelines:
            raise LookupError("no pipeline found")
        return loaded.pipelines[0]
    for doc in loaded.pipelines:
        if doc.name == name:
            return doc
    known = ", ".join(sorted(p.name for p in loaded.pipelines)) or "none"
    raise LookupError(f"no pipeline named {name!r} (found: {known})")
