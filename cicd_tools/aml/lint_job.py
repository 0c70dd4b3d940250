"""Lint Azure ML command jobs before submission: YAML job files, REST job bodies, ADF activities that PUT jobs.

The rules catch what the service refuses or what silently runs the wrong thing (AZURE_FACTS.md §1, §6):

- AML001 a typed literal input (``type: string``): pipeline-job syntax, refused for a Command job;
- AML002 an empty (or missing) literal value: passes the client, refused by the service;
- AML003 ``mlflow_model`` for a checkpoint that is not MLflow (the path shows no ``MLmodel``);
- AML004 code (or a REST environment) referenced by ``azureml:name:version``, a bare or relative path:
  the SDK takes ``azureml:name:version`` for a *local path* and uploads anonymous code;
- AML005 a Kubernetes compute without an instance type (the job lands on the default instance type);
- AML006 a ``mode`` the input (or output) type does not allow;
- AML007 a job body assembled as JSON text by concat / string interpolation: one quote in a parameter
  breaks the JSON (build the body as an object with expressions in values instead).

Pure functions over parsed documents; only ``lint_files`` touches the file system (and PyYAML).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cicd_tools.aml.jobspec import (
    CHECKPOINT_SUFFIXES,
    INPUT_MODES,
    OUTPUT_MODES,
    REST_TO_YAML_MODE,
    TYPED_LITERALS,
    YAML_MODES,
)
from cicd_tools.support.bounded import (
    MAX_FILE_BYTES,
    MAX_YAML_BYTES,
    display_name,
    load_yaml_bounded,
    loads_json_bounded,
    read_text_bounded,
)
from cicd_tools.support.errors import UsageError

RULES: dict[str, tuple[str, str]] = {  # id -> (severity, title)
    "AML000": ("error", "file is not readable YAML / JSON"),
    "AML001": ("error", "typed literal input in a command job"),
    "AML002": ("error", "empty literal input value"),
    "AML003": ("error", "mlflow_model input for a checkpoint that is not MLflow"),
    "AML004": ("error", "code / environment not referenced by a full ARM id"),
    "AML005": ("warning", "Kubernetes compute without an instance type"),
    "AML006": ("error", "mode not allowed for the input / output type"),
    "AML007": ("error", "job body built as JSON text by string concatenation"),
}
CODE_ARM_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/[^/]+/codes/[^/]+/versions/[^/]+$", re.IGNORECASE)
ENV_ARM_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/[^/]+/environments/[^/]+/versions/[^/]+$", re.IGNORECASE)
REGISTRY_RE = re.compile(r"^azureml://registries/[^/]+/(codes|environments)/[^/]+/(versions|labels)/[^/]+$")
KUBERNETES_HINTS = ("aks", "k8s", "kubernetes")
_JOBS_URL_RE = re.compile(r"MachineLearningServices/workspaces/.*/jobs/", re.IGNORECASE)
_ADF_LITERAL_RE = re.compile(r"'(?:[^']|'')*'")


@dataclass(frozen=True)
class JobFinding:
    """One problem: rule id, severity, where (file + path in the document), what, and the fix."""

    rule: str
    severity: str
    message: str
    fix: str
    file: str
    path: str
    line: int | None = None  # 1-based, where the path starts in the file (for CI annotations)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _Sink:
    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[JobFinding] = []

    def add(self, rule: str, path: str, message: str, fix: str) -> None:
        self.findings.append(JobFinding(rule, RULES[rule][0], message, fix, self.file, path))


def _dynamic(value: Any) -> bool:
    """An ADF expression (its value is known only at run time)."""
    if isinstance(value, Mapping):
        return str(value.get("type", "")).lower() == "expression"
    return isinstance(value, str) and value.startswith("@") and not value.startswith("@@")


def looks_kubernetes(compute: str, extra: Sequence[str] = ()) -> bool:
    name = compute.rsplit("/", 1)[-1].removeprefix("azureml:").lower()
    return name in {e.lower() for e in extra} or any(h in name for h in KUBERNETES_HINTS)


# -- YAML (az ml / SDK schema) -----------------------------------------------------------------------------
def lint_yaml_job(doc: Any, file: str, base_dir: Path, *, kubernetes: Sequence[str] = ()) -> list[JobFinding]:
    """Findings for one command-job YAML document (other job types are not linted)."""
    sink = _Sink(file)
    if not isinstance(doc, Mapping) or doc.get("type", "command") != "command" or "command" not in doc:
        return []
    _yaml_code(sink, doc.get("code"))
    for name, item in (doc.get("inputs") or {}).items() if isinstance(doc.get("inputs"), Mapping) else []:
        _yaml_input(sink, str(name), item, base_dir)
    for name, item in (doc.get("outputs") or {}).items() if isinstance(doc.get("outputs"), Mapping) else []:
        mode = item.get("mode") if isinstance(item, Mapping) else None
        if mode is not None and YAML_MODES.get(str(mode)) not in OUTPUT_MODES:
            sink.add("AML006", f"$.outputs.{name}.mode", f"output '{name}' has mode '{mode}'; outputs allow "
                     f"{', '.join(REST_TO_YAML_MODE[m] for m in OUTPUT_MODES)}", "Use rw_mount (or upload).")
    compute = doc.get("compute")
    raw = doc.get("resources")
    resources: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if isinstance(compute, str) and looks_kubernetes(compute, kubernetes) and not resources.get("instance_type"):
        sink.add("AML005", "$.resources.instance_type", f"compute '{compute}' is a Kubernetes compute and the job "
                 "names no instance type: it runs on the cluster's default instance type (no GPU)",
                 "Set resources.instance_type to one of the compute's instance types (e.g. gpu-a100).")
    return sink.findings


def _yaml_code(sink: _Sink, code: Any) -> None:
    if code is None or not isinstance(code, str):
        return
    fix = ("Use `azureml:` + the full ARM id of the registered version (the pointer's assetId): "
           "code: azureml:/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version}.")
    if code.startswith("azureml:/subscriptions/") and CODE_ARM_RE.match(code.removeprefix("azureml:")):
        return
    if REGISTRY_RE.match(code):
        return
    if code.startswith("azureml:"):
        message = (f"code '{code}' is taken by the SDK for a local path (`azureml:name:version` is not resolved "
                   "for code): the job fails, or uploads anonymous code")
    elif code.startswith("/subscriptions/"):
        message = f"code '{code}' is an ARM id without the `azureml:` prefix: the SDK looks for a local folder"
    else:
        message = (f"code '{code}' is a local path: the SDK uploads it as anonymous code, not the version CI "
                   "registered and published")
    sink.add("AML004", "$.code", message, fix)


def _yaml_input(sink: _Sink, name: str, item: Any, base_dir: Path) -> None:
    path = f"$.inputs.{name}"
    if item is None or item == "":
        sink.add("AML002", path, f"input '{name}' is empty: the service refuses it (\"The Value field is "
                 "required\")", "Give the input a value, or remove it and its " + "${{inputs." + name + "}} reference.")
        return
    if not isinstance(item, Mapping):
        return
    kind = str(item.get("type") or "")
    if kind in TYPED_LITERALS:
        sink.add("AML001", f"{path}.type", f"input '{name}' is a typed literal (type: {kind}): pipeline-job syntax "
                 f"a command job refuses (\"The value '{kind}' of input type is not valid for Command job\")",
                 f"Write the value directly: `{name}: <value>` (literals are sent as strings).")
        if item.get("value", item.get("default")) in ("", None):
            sink.add("AML002", f"{path}.value", f"input '{name}' has no value", "Give the input a value.")
        return
    if kind in INPUT_MODES:
        mode = item.get("mode")
        if mode is not None and YAML_MODES.get(str(mode)) not in INPUT_MODES[kind]:
            sink.add("AML006", f"{path}.mode", f"input '{name}' of type {kind} has mode '{mode}'; {kind} allows "
                     f"{', '.join(REST_TO_YAML_MODE[m] for m in INPUT_MODES[kind])}",
                     f"Use one of {', '.join(REST_TO_YAML_MODE[m] for m in INPUT_MODES[kind])}.")
        if kind == "mlflow_model":
            _mlflow(sink, name, f"{path}.type", item.get("path"), base_dir)


def _mlflow(sink: _Sink, name: str, path: str, uri: Any, base_dir: Path | None) -> None:
    """AML003 when the path shows no MLmodel: a local folder without one, or a checkpoint file."""
    if not isinstance(uri, str) or not uri or _dynamic(uri):
        return
    problem = None
    local = not re.match(r"^[a-z][a-z0-9+.-]*:", uri)
    if local and base_dir is not None and (base_dir / uri).exists():
        target = base_dir / uri
        if target.is_file() or not (target / "MLmodel").is_file():
            problem = f"{uri} holds no MLmodel file"
    elif uri.rstrip("/").lower().endswith(CHECKPOINT_SUFFIXES):
        problem = f"{uri} is a checkpoint file, not an MLflow model folder"
    if problem:
        sink.add("AML003", path, f"input '{name}' is an mlflow_model but {problem}: the job fails when the "
                 "model is loaded", "Use type custom_model for a plain checkpoint (mlflow_model needs MLmodel).")


# -- REST job bodies (what a WebActivity PUTs) -------------------------------------------------------------
def lint_rest_body(body: Any, file: str, base: str, *, kubernetes: Sequence[str] = ()) -> list[JobFinding]:
    """Findings for a ``PUT {WS}/jobs/{name}`` body (``{"properties": {...}}``); expression values are skipped."""
    sink = _Sink(file)
    props = body.get("properties") if isinstance(body, Mapping) else None
    if not isinstance(props, Mapping) or props.get("jobType") not in ("Command", None):
        return []
    base = f"{base}.properties"
    code_id = props.get("codeId")
    if isinstance(code_id, str) and not _dynamic(code_id) and not CODE_ARM_RE.match(code_id) \
            and not REGISTRY_RE.match(code_id):
        sink.add("AML004", f"{base}.codeId", f"codeId '{code_id}' is not the full ARM id of a code version: the "
                 "service refuses it", "Use the pointer's assetId (/subscriptions/…/codes/{name}/versions/{v}).")
    env = props.get("environmentId")
    if isinstance(env, str) and not _dynamic(env) and not ENV_ARM_RE.match(env) and not REGISTRY_RE.match(env):
        sink.add("AML004", f"{base}.environmentId", f"environmentId '{env}' is not an ARM id or registry URI: the "
                 "REST body is not resolved like the SDK's `azureml:name:version`",
                 "Use /subscriptions/…/workspaces/{ws}/environments/{name}/versions/{v} or azureml://registries/….")
    inputs = props.get("inputs")
    for name, item in inputs.items() if isinstance(inputs, Mapping) else []:
        _rest_input(sink, f"{base}.inputs.{name}", str(name), item)
    outputs = props.get("outputs")
    for name, item in outputs.items() if isinstance(outputs, Mapping) else []:
        mode = item.get("mode") if isinstance(item, Mapping) else None
        if isinstance(mode, str) and not _dynamic(mode) and mode not in OUTPUT_MODES:
            sink.add("AML006", f"{base}.outputs.{name}.mode", f"output '{name}' has mode '{mode}'; outputs allow "
                     f"{', '.join(OUTPUT_MODES)}", "Use ReadWriteMount (or Upload).")
    compute = props.get("computeId")
    raw = props.get("resources")
    resources: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    text = json.dumps(compute) if _dynamic(compute) else compute
    if isinstance(text, str) and looks_kubernetes(text.rstrip("\"'}) "), kubernetes) \
            and not resources.get("instanceType"):
        sink.add("AML005", f"{base}.resources.instanceType", "the job runs on a Kubernetes compute and names no "
                 "instanceType: it lands on the default instance type", "Set resources.instanceType.")
    return sink.findings


def _rest_input(sink: _Sink, path: str, name: str, item: Any) -> None:
    if not isinstance(item, Mapping) or _dynamic(item):
        return
    kind = item.get("jobInputType")
    if kind in TYPED_LITERALS:
        sink.add("AML001", f"{path}.jobInputType", f"input '{name}' has jobInputType '{kind}': the service refuses "
                 f"it (\"The value '{kind}' of input type is not valid for Command job\")",
                 "Use jobInputType literal with a string value.")
    elif kind == "literal":
        value = item.get("value")
        if value is None or value == "":
            sink.add("AML002", f"{path}.value", f"literal input '{name}' has an empty value: the service refuses "
                     "it (\"The Value field is required\")", "Give it a value, or drop the input.")
        elif isinstance(item.get("mode"), str):
            sink.add("AML006", f"{path}.mode", f"literal input '{name}' has a mode", "Remove the mode.")
    elif isinstance(kind, str) and kind in INPUT_MODES:
        mode = item.get("mode")
        if isinstance(mode, str) and not _dynamic(mode) and mode not in INPUT_MODES[kind]:
            sink.add("AML006", f"{path}.mode", f"input '{name}' of type {kind} has mode '{mode}'; {kind} allows "
                     f"{', '.join(INPUT_MODES[kind])}", f"Use one of {', '.join(INPUT_MODES[kind])}.")
        if kind == "mlflow_model":
            _mlflow(sink, name, f"{path}.jobInputType", item.get("uri"), None)


# -- ADF WebActivities that PUT a job ----------------------------------------------------------------------
def is_job_submission(activity: Mapping[str, Any]) -> bool:
    """A WebActivity whose method is PUT and whose url is an Azure ML job."""
    if str(activity.get("type", "")).lower() != "webactivity":
        return False
    tp = activity.get("typeProperties")
    if not isinstance(tp, Mapping) or str(tp.get("method", "")).upper() != "PUT":
        return False
    url = tp.get("url")
    text = url.get("value") if isinstance(url, Mapping) else url
    return isinstance(text, str) and _JOBS_URL_RE.search(text) is not None


def concatenated_json(body: Any) -> str | None:
    """How a body is assembled as JSON text (``concat`` / ``@{…}`` around JSON punctuation), or None."""
    text = body.get("value") if isinstance(body, Mapping) else body
    if not isinstance(text, str):
        return None
    if _dynamic(body) or _dynamic(text):
        pieces = [lit[1:-1].replace("''", "'") for lit in _ADF_LITERAL_RE.findall(text)]
        if any('"' in p and any(c in p for c in "{}:,") for p in pieces) and ("concat(" in text or "@{" in text):
            return "concat"
        return None
    if "@{" in text and ('{"' in text or '":' in text):
        return "interpolation"
    return None


def lint_job_activity(activity: Mapping[str, Any], file: str, path: str,
                      *, kubernetes: Sequence[str] = ()) -> list[JobFinding]:
    """Findings for one ADF activity (none unless it PUTs an Azure ML job)."""
    if not is_job_submission(activity):
        return []
    body_path = f"{path}.typeProperties.body"
    body = activity["typeProperties"].get("body")
    how = concatenated_json(body)
    if how:
        sink = _Sink(file)
        sink.add("AML007", body_path, f"activity '{activity.get('name')}' builds the job body as JSON text by "
                 f"{'concat()' if how == 'concat' else 'string interpolation'}: a quote or backslash in a "
                 "parameter breaks the JSON (or injects fields)",
                 "Make the body a JSON object with expressions in its values "
                 "(\"command\": \"@pipeline().parameters.command\"); ADF escapes each value.")
        return sink.findings
    if isinstance(body, Mapping) and not _dynamic(body):
        return lint_rest_body(body, file, body_path, kubernetes=kubernetes)
    return []


def _walk_activities(node: Any, path: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    if isinstance(node, Mapping):
        if "type" in node and "typeProperties" in node and "name" in node:
            yield node, path
        for key, value in node.items():
            yield from _walk_activities(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_activities(value, f"{path}[{index}]")


def lint_json_document(doc: Any, file: str, *, kubernetes: Sequence[str] = ()) -> list[JobFinding]:
    """A REST job body, or a pipeline / ARM template whose WebActivities PUT jobs."""
    if isinstance(doc, Mapping) and isinstance(doc.get("properties"), Mapping) \
            and "jobType" in doc["properties"]:
        return lint_rest_body(doc, file, "$", kubernetes=kubernetes)
    findings: list[JobFinding] = []
    for activity, path in _walk_activities(doc, "$"):
        findings.extend(lint_job_activity(activity, file, path, kubernetes=kubernetes))
    return findings


def _yaml_line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Every key / element path of the first YAML document -> its 1-based line (``{}`` when it does not compose)."""
    import yaml

    index: dict[tuple[str | int, ...], int] = {}

    def walk(node: Any, parts: tuple[str | int, ...]) -> None:
        index.setdefault(parts, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                index.setdefault((*parts, str(key.value)), key.start_mark.line + 1)
                walk(value, (*parts, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for position, value in enumerate(node.value):
                walk(value, (*parts, position))

    from cicd_tools.support.bounded import compose_yaml_bounded

    try:
        root = compose_yaml_bounded(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def _with_lines(findings: list[JobFinding], index: dict[tuple[str | int, ...], int]) -> list[JobFinding]:
    from cicd_tools.adf.jsonpos import line_of

    return [replace(f, line=line_of(index, f.path)) for f in findings]


def lint_files(paths: Iterable[Path], *, kubernetes: Sequence[str] = ()) -> list[JobFinding]:
    """Lint job YAML (.yml/.yaml) and JSON files. Raises: UsageError for a missing file or a folder."""
    findings: list[JobFinding] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist", hint="Pass job YAML or pipeline JSON files.")
        if path.is_dir():
            raise UsageError(f"{path} is a folder; pass files (e.g. {path}/*.yml)",
                             hint="A shell glob expands to the files: cicd-tools aml lint-job aml/jobs/*.yml")
        file = str(path)
        yaml_file = path.suffix.lower() in (".yml", ".yaml")
        try:
            text = read_text_bounded(path, cap=MAX_YAML_BYTES if yaml_file else MAX_FILE_BYTES, what="job file")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{display_name(path)} cannot be read: {exc}") from None
        if yaml_file:
            import yaml

            try:
                docs = load_yaml_bounded(text, all_documents=True, where=display_name(path))
            except yaml.YAMLError as exc:  # worded and placed as `ci lint` does: the line the parser stopped on
                mark = getattr(exc, "problem_mark", None)
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                findings.append(JobFinding("AML000", "error", f"not valid YAML: {problem}",
                                           "Fix the YAML syntax at the line named.", file, "$",
                                           line=mark.line + 1 if mark is not None else None))
                continue
            found = [f for doc in docs for f in lint_yaml_job(doc, file, path.parent, kubernetes=kubernetes)]
            findings.extend(_with_lines(found, _yaml_line_index(text)) if found else [])
        else:
            try:
                doc = loads_json_bounded(text, where=display_name(path))
            except ValueError as exc:
                findings.append(JobFinding("AML000", "error", f"not valid JSON: {exc}", "Fix the JSON syntax at the"
                                           " line named.", file, "$", line=getattr(exc, "lineno", None)))
                continue
            found = lint_json_document(doc, file, kubernetes=kubernetes)
            if found:
                from cicd_tools.adf.jsonpos import line_index

                findings.extend(_with_lines(found, line_index(text)))
    return findings
