"""Before ``flow`` changes anything: is what the configuration names there, as the configuration uses it?

Read-only: the factory, each configured pipeline as PUBLISHED (its parameter names and types), the workspace and
the compute the factory's ``computeName`` global parameter names. A configuration that cannot finish is refused
before the firewall opens, with the resource that is missing named truly and the command that fixes it.
``read_published`` does the reads (GETs and lists only); ``problems`` judges them (pure, tested without Azure).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cicd_tools.support.errors import CicdError, ConfigError

if TYPE_CHECKING:
    from cicd_tools.adf.client import FactoryRef
    from cicd_tools.settings.config import FlowConfig

log = logging.getLogger("cicd_tools.flow")

ML_API = "2024-04-01"
DEPLOY = "cicd-tools adf deploy adf/"


@dataclass(frozen=True)
class ReadinessRequest:
    """What to read: the factory and pipelines (None: the adf-run step is off), the workspace (None: not needed)."""

    arm_endpoint: str
    factory: FactoryRef | None = None
    pipelines: tuple[str, ...] = ()
    workspace_id: str | None = None


@dataclass(frozen=True)
class Published:
    """What the reads found. ``None`` for a fact that was not asked or could not be read (not judged)."""

    factory_found: bool | None = None
    pipelines: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # published name -> parameter -> type
    missing_pipelines: tuple[str, ...] = ()
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # pipeline -> parameters without default
    compute: str | None = None  # the factory's computeName global parameter
    workspace_found: bool | None = None
    compute_found: bool | None = None


def readiness_request(cfg: FlowConfig, arm_endpoint: str) -> ReadinessRequest:
    """What the enabled steps need to exist: the factory and pipelines for adf-run, the workspace for the rest."""
    from cicd_tools.adf.client import FactoryRef

    a = cfg.azure
    factory = None
    if cfg.step_enabled("adf-run") and cfg.adf.pipelines and a.factory:
        factory = FactoryRef(str(a.subscription_id), str(a.resource_group), a.factory)
    workspace_id = None
    if any(cfg.step_enabled(s) for s in ("register", "aml-verify", "model-mirror")) and a.workspace and \
            a.subscription_id and a.resource_group:
        workspace_id = (f"/subscriptions/{a.subscription_id}/resourceGroups/{a.resource_group}/providers/"
                        f"Microsoft.MachineLearningServices/workspaces/{a.workspace}")
    return ReadinessRequest(arm_endpoint=arm_endpoint, factory=factory,
                            pipelines=tuple(p.name for p in cfg.adf.pipelines), workspace_id=workspace_id)


class FlowNotReady(ConfigError):
    """The configuration names something that is not there (or not as configured); nothing was changed."""

    default_hint = f"Publish the factory (`{DEPLOY} --factory NAME`), or fix cicd-tools.toml."


def _matches(value: Any, declared: str) -> bool:
    """Whether ADF's createRun accepts ``value`` for a parameter of type ``declared`` (AZURE_FACTS.md §5)."""
    kind = declared.lower()
    if kind in ("string", "securestring"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # a type we do not know: ADF decides


def _type_of(value: Any) -> str:
    return {bool: "Bool", int: "Int", float: "Float", str: "String", list: "Array", dict: "Object"}.get(
        type(value), type(value).__name__)


def problems(cfg: FlowConfig, found: Published, *, pinned: str | None = None) -> list[FlowNotReady]:
    """Each reason the configured flow cannot finish, first the outermost (factory before its pipelines)."""
    out: list[FlowNotReady] = []
    a = cfg.azure
    where = f"resource group {a.resource_group}"
    if found.factory_found is False:
        out.append(FlowNotReady(f"the factory {a.factory} does not exist in {where}", code="FactoryNotFound",
                                hint="Check azure.factory / CICD_FACTORY and azure.resource-group; create the factory"
                                     f" and publish it (`{DEPLOY} --factory {a.factory}`)."))
        return out
    for name in found.missing_pipelines:
        out.append(FlowNotReady(
            f"the pipeline {name} is not published in the factory {a.factory}", code="PipelineNotFound",
            hint=f"Publish it: `{DEPLOY} --factory {a.factory}` (createRun runs the PUBLISHED factory), or fix"
                 " adf.pipelines in cicd-tools.toml."))
    for pipeline in cfg.adf.pipelines if cfg.step_enabled("adf-run") else ():
        declared = found.pipelines.get(pipeline.name)
        if declared is None:
            continue
        for param, value in pipeline.parameters.items():
            if param not in declared:
                out.append(FlowNotReady(
                    f"the published pipeline {pipeline.name} has no parameter {param} (it declares"
                    f" {', '.join(sorted(declared)) or 'none'})", code="PipelineParameterNotDeclared",
                    hint=f"Publish the pipeline that declares it (`{DEPLOY} --factory {a.factory}`), or remove"
                         f" {param} from adf.pipelines.parameters in cicd-tools.toml."))
            elif not _matches(value, declared[param]):
                out.append(FlowNotReady(
                    f"the parameter {param} of pipeline {pipeline.name} is declared {declared[param]} but the"
                    f" configuration passes {_type_of(value)} {value!r}", code="PipelineParameterType",
                    hint=f"Write a {declared[param]} value for {param} in cicd-tools.toml, or publish the pipeline"
                         f" with the type you mean (`{DEPLOY} --factory {a.factory}`)."))
        given = set(pipeline.parameters) | ({pinned} if pinned else set())
        lacking = [p for p in found.required.get(pipeline.name, ()) if p not in given]
        if lacking:
            out.append(FlowNotReady(
                f"the published pipeline {pipeline.name} requires {', '.join(lacking)} (no default value) and the"
                " configuration does not pass it", code="PipelineParameterMissing",
                hint=f"Add {', '.join(lacking)} to adf.pipelines.parameters in cicd-tools.toml."))
    if found.workspace_found is False:
        out.append(FlowNotReady(f"the workspace {a.workspace} does not exist in {where}", code="WorkspaceNotFound",
                                hint="Check azure.workspace / CICD_WORKSPACE and azure.resource-group."))
    elif found.compute_found is False:
        out.append(FlowNotReady(
            f"the compute {found.compute} (the factory's computeName global parameter) is not attached to the"
            f" workspace {a.workspace}", code="ComputeNotFound",
            hint="Attach it (`az ml compute attach --type Kubernetes`), or fix computeName in"
                 f" adf/factory/*.json and publish (`{DEPLOY} --factory {a.factory}`)."))
    return out


def _declared(item: Mapping[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    params = (item.get("properties") or {}).get("parameters") or {}
    types: dict[str, str] = {}
    required: list[str] = []
    for name, spec in params.items() if isinstance(params, Mapping) else ():
        spec = spec if isinstance(spec, Mapping) else {}
        types[str(name)] = str(spec.get("type") or "String")
        if "defaultValue" not in spec:
            required.append(str(name))
    return types, tuple(required)


def read_published(request: ReadinessRequest, credential: Any) -> Published:
    """The reads (GET and list only). Raises: CicdError when ARM cannot be asked at all (auth, network)."""
    from cicd_tools.adf.client import ArmCalls, FactoryNotFound
    from cicd_tools.adf.operations import factory_api_for

    factory_found: bool | None = None
    pipelines: dict[str, dict[str, str]] = {}
    required: dict[str, tuple[str, ...]] = {}
    missing: list[str] = []
    compute: str | None = None
    if request.factory is not None:
        ref = request.factory
        api = factory_api_for(credential, ref, request.arm_endpoint)
        calls = ArmCalls(retries=2)
        try:
            body = calls(f"get factory {ref.name}", lambda: api.get_factory(ref))
            factory_found = True
        except FactoryNotFound:
            return Published(factory_found=False)
        globals_ = (body.get("properties") or {}).get("globalParameters") or {}
        value = (globals_.get("computeName") or {}).get("value") if isinstance(globals_, Mapping) else None
        compute = str(value) if isinstance(value, str) and value else None
        if request.pipelines:
            published = {str(p.get("name")): p for p in calls("list pipelines",
                                                              lambda: api.list_resources(ref, "pipelines"))}
            for name in request.pipelines:
                if name not in published:
                    missing.append(name)
                else:
                    pipelines[name], required[name] = _declared(published[name])
    workspace_found: bool | None = None
    compute_found: bool | None = None
    if request.workspace_id is not None:
        workspace_found = _exists(request, credential, request.workspace_id)
        if workspace_found and compute:
            compute_found = _exists(request, credential, f"{request.workspace_id}/computes/{compute}")
    return Published(factory_found=factory_found, pipelines=pipelines, missing_pipelines=tuple(missing),
                     required=required, compute=compute, workspace_found=workspace_found, compute_found=compute_found)


def _exists(request: ReadinessRequest, credential: Any, path: str) -> bool | None:
    """True/False for 200/404; None when the answer says nothing about existence (403: the role may be elsewhere)."""
    from cicd_tools.preflight.arm import ArmReadError, PipelineArmReader

    reader = PipelineArmReader(credential, request.arm_endpoint, retries=1)
    try:
        reader.get(path, ML_API)
        return True
    except ArmReadError as err:
        if err.status == 404:
            return False
        log.info("could not read %s (%s): not checked before the flow", path, err.summary)
        return None
    except CicdError as err:
        log.info("could not read %s (%s): not checked before the flow", path, err.message)
        return None
    finally:
        reader.close()
