"""What the Azure ML service refuses in a Command job PUT, with its messages (the sandbox's job provider asks).

``codeId`` the full ARM id of an existing code version, an existing compute and one of its instance types, no
typed literals, no empty literal values, modes the input types allow, asset ``uri``s that resolve, a known
environment, ``${{inputs.x}}`` / ``${{outputs.y}}`` references that are declared. Environments the sandbox knows
(it validates ``environmentId`` but builds no image): ``WORKSPACE_ENVIRONMENTS`` by full ARM id, and the curated
``azureml`` registry's ``CURATED_ENVIRONMENTS`` as ``azureml://registries/azureml/environments/{name}/versions/{v}``
or ``…/labels/latest``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cicd_tools.aml.jobspec import INPUT_MODES, OUTPUT_MODES, OUTPUT_TYPES, TYPED_LITERALS
from cicd_tools.sandbox.ml import compute as aml_compute
from cicd_tools.sandbox.ml.workspace import _stored, _user_error
from cicd_tools.sandbox.server import HttpError, Hub

Resolver = Callable[[str], "str | None"]

CODE_ID_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
ENV_ARM_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
ENV_REGISTRY_RE = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/environments/(?P<name>[^/]+)/(?:versions/(?P<version>[^/]+)"
    r"|labels/(?P<label>[^/]+))$")
WORKSPACE_ENVIRONMENTS: dict[str, tuple[str, ...]] = {"pytorch-gpu": ("1",), "sklearn-cpu": ("1", "2")}
CURATED_ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "sklearn-1.5": ("1", "25"), "acpt-pytorch-2.2-cuda12.1": ("1", "30"), "minimal-ubuntu22.04-py311-cpu": ("1",),
}
REFERENCE_RE = re.compile(r"\$\{\{\s*(?P<kind>inputs|outputs)\.(?P<name>[A-Za-z0-9_]+)\s*\}\}")


def invalid(message: str) -> HttpError:
    return _user_error(400, message, "ValidationError")


def _check_code(hub: Hub, ws: str, code_id: Any) -> None:
    if not isinstance(code_id, str) or not code_id:
        raise invalid("CodeId is required for a Command job: the full ARM id of a code version "
                       "(/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version}).")
    match = CODE_ID_RE.match(code_id)
    if not match:
        raise invalid(f"Invalid codeId '{code_id}': a Command job's codeId must be the full ARM id of a code "
                       "version (/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version}); "
                       "'azureml:name:version' and local paths are resolved by the client, not the service.")
    if match["ws"].lower() != ws.lower() or match["sub"].lower() != hub.layout.subscription_id.lower() \
            or match["rg"].lower() != hub.layout.resource_group.lower():
        raise invalid(f"Invalid codeId '{code_id}': it names another workspace than {ws}.")
    try:
        _stored(hub, ws, match["name"], match["version"])
    except HttpError:
        raise _user_error(404, f"Could not find asset with ID: {code_id}", "NotFound") from None


def environment_known(hub: Hub, env_id: str) -> bool:
    """Whether ``env_id`` names an environment the sandbox's workspace or the curated registry holds."""
    match = ENV_ARM_RE.match(env_id)
    if match:
        return match["ws"].lower() == hub.layout.workspace.lower() and \
            match["version"] in WORKSPACE_ENVIRONMENTS.get(match["name"], ())
    match = ENV_REGISTRY_RE.match(env_id)
    if match and match["registry"] == "azureml" and match["name"] in CURATED_ENVIRONMENTS:
        return match["label"] == "latest" if match["label"] else match["version"] in CURATED_ENVIRONMENTS[match["name"]]
    return False


def _check_environment(hub: Hub, env_id: Any) -> None:
    if not isinstance(env_id, str) or not env_id:
        raise invalid("EnvironmentId is required for a Command job.")
    if not environment_known(hub, env_id):
        raise _user_error(404, f"Could not find asset with ID: {env_id} (an environment is referenced by its full "
                          "ARM id, or azureml://registries/{registry}/environments/{name}/versions/{version}).",
                          "NotFound")


def _check_compute(hub: Hub, props: dict[str, Any]) -> aml_compute.ComputeSpec:
    compute = props.get("computeId")
    match = aml_compute.COMPUTE_ID_RE.match(compute) if isinstance(compute, str) else None
    if match is None:
        raise invalid(f"Invalid computeId '{compute}': the full ARM id of a workspace compute is required.")
    spec = aml_compute.compute_spec(hub, match["compute"])
    if spec is None or match["ws"].lower() != hub.layout.workspace.lower():
        raise _user_error(404, f"Compute {match['compute']} not found in workspace {match['ws']}.", "NotFound")
    resources = props.get("resources") or {}
    if not isinstance(resources, dict):
        raise invalid("resources must be an object.")
    wanted = resources.get("instanceType")
    if wanted is not None and spec.instance_type(str(wanted)) is None:
        raise invalid(f"Instance type '{wanted}' is not found in compute '{spec.name}'. Available instance types: "
                       f"{', '.join(t.name for t in spec.instance_types)}.")
    count = resources.get("instanceCount", 1)
    if not isinstance(count, int) or count < 1:
        raise invalid(f"resources.instanceCount must be a positive integer, got {count!r}.")
    return spec


def _check_inputs(props: dict[str, Any], resolve: Resolver) -> None:
    inputs = props.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise invalid("inputs must be an object.")
    for name, item in inputs.items():
        if not isinstance(item, dict):
            raise invalid(f"Input '{name}' must be an object with jobInputType.")
        kind = item.get("jobInputType")
        if kind == "literal":
            value = item.get("value")
            if value is None:
                raise invalid(f"Input '{name}': The Value field is required.")
            if value == "":
                raise invalid(f"Input '{name}': Empty string is not allowed for input value. "
                               "The Value field is required.")
            continue
        if kind in TYPED_LITERALS or kind not in INPUT_MODES:
            raise invalid(f"The value '{kind}' of input type is not valid for Command job")
        mode = item.get("mode")
        if mode is not None and mode not in INPUT_MODES[kind]:
            raise invalid(f"Input '{name}': mode '{mode}' is not supported for input type '{kind}'. Supported "
                           f"modes: {', '.join(INPUT_MODES[kind])}.")
        uri = item.get("uri")
        if not isinstance(uri, str) or not uri:
            raise invalid(f"Input '{name}': The Uri field is required.")
        if resolve(uri) is None:
            raise invalid(f"Input '{name}': the uri '{uri}' could not be resolved (the sandbox resolves "
                           "azureml://datastores/workspaceblobstore/paths/… and azureml://jobs/{job}/outputs/{name}).")


def _check_outputs(props: dict[str, Any]) -> None:
    outputs = props.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise invalid("outputs must be an object.")
    for name, item in outputs.items():
        if item is None:
            continue
        if not isinstance(item, dict) or item.get("jobOutputType") not in OUTPUT_TYPES:
            kind = item.get("jobOutputType") if isinstance(item, dict) else item
            raise invalid(f"The value '{kind}' of output type is not valid for Command job")
        mode = item.get("mode")
        if mode is not None and mode not in OUTPUT_MODES:
            raise invalid(f"Output '{name}': mode '{mode}' is not supported for outputs. Supported modes: "
                           f"{', '.join(OUTPUT_MODES)}.")
        uri = item.get("uri")
        if uri is not None and not re.match(r"^azureml://datastores/workspaceblobstore/paths/.+", str(uri)):
            raise invalid(f"Output '{name}': the sandbox writes outputs to "
                           "azureml://datastores/workspaceblobstore/paths/…, not '{uri}'.")


def _check_command(props: dict[str, Any]) -> None:
    command = props.get("command")
    if not isinstance(command, str) or not command.strip():
        raise invalid("Command is required for a Command job.")
    for ref in REFERENCE_RE.finditer(command):
        declared = props.get(ref["kind"]) or {}
        if ref["name"] not in declared:
            raise invalid(f"The command references ${{{{{ref['kind']}.{ref['name']}}}}}, which is not declared in "
                           f"the job's {ref['kind']}.")


def validate_command_job(hub: Hub, ws: str, props: dict[str, Any], resolve: Resolver) -> aml_compute.ComputeSpec:
    """Check a Command job's properties like the service. Raises: HttpError (400/404 UserError)."""
    if props.get("jobType") != "Command":
        raise _user_error(400, f"The sandbox runs Command jobs only; jobType '{props.get('jobType')}' is not "
                          "implemented.", "NotImplemented")
    _check_command(props)
    _check_code(hub, ws, props.get("codeId"))
    _check_environment(hub, props.get("environmentId"))
    spec = _check_compute(hub, props)
    _check_inputs(props, resolve)
    _check_outputs(props)
    return spec
