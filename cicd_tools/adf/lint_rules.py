"""Structural lint rules: connectVia, authentication, dependencies, variables, policies, names.

Expression rules (references, parse errors, unknown functions) live in ``lint_expr``. Each rule reads
a ``Checker`` and calls ``checker.add``; severities are in ``lint_findings.RULES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.adf import jsonpos
from cicd_tools.adf.lint_findings import RULES, Finding, Severity
from cicd_tools.adf.lint_model import ActivityNode, PipelineModel, find_cycles
from cicd_tools.adf.loader import Factory, PipelineDoc
from cicd_tools.adf.run_rules import batch_count_problem
from cicd_tools.adf.timespan import parse_timespan

CONDITIONS = ("Succeeded", "Failed", "Skipped", "Completed")
MSI_TYPES = {"msi", "systemassignedmanagedidentity", "userassignedmanagedidentity"}
DEFAULT_RUNTIME = "AutoResolveIntegrationRuntime"


@dataclass
class Checker:
    """What the rules of one pipeline share, and the findings they produce."""

    doc: PipelineDoc
    factory: Factory
    model: PipelineModel
    findings: list[Finding] = field(default_factory=list)

    @property
    def parameters(self) -> Mapping[str, Any] | None:
        """Declared parameters; None when unknown (an ARM template may set them with an ARM expression)."""
        return _declared(self.doc.properties.get("parameters"))

    @property
    def variables(self) -> Mapping[str, Any] | None:
        """Declared variables; None when unknown."""
        return _declared(self.doc.properties.get("variables"))

    def add(
        self,
        rule: str,
        path: str,
        message: str,
        fix: str,
        *,
        node: ActivityNode | None = None,
        severity: Severity | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                rule=rule,
                severity=severity or RULES[rule].severity,
                message=message,
                fix=fix,
                file=str(self.doc.source.path),
                path=path,
                pipeline=self.doc.name,
                activity=node.name if node is not None else None,
                line=self.doc.source.line_of(path),
            )
        )


def _declared(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return {}
    return value if isinstance(value, Mapping) else None


def _is_dynamic(value: Any) -> bool:
    """An expression (evaluated at run time): its format is the expression rules' business."""
    if isinstance(value, Mapping):
        return str(value.get("type", "")).lower() == "expression"
    if not isinstance(value, str):
        return False
    # An ARM template may fill a value with an ARM expression: "[parameters('timeout')]".
    arm = value.startswith("[") and value.endswith("]") and not value.startswith("[[")
    return arm or (value.startswith("@") and not value.startswith("@@"))


def check_connect_via(c: Checker, node: ActivityNode) -> None:
    """ADF010 root-level connectVia; ADF011 connectVia naming an unknown integration runtime."""
    if "connectVia" in node.obj:
        where = (
            "typeProperties"
            if node.type.lower() in {"webactivity", "executessispackage", "webhook"}
            else ("typeProperties (or onto the linked service the activity uses)")
        )
        c.add(
            "ADF010",
            jsonpos.child(node.path, "connectVia"),
            f"activity '{node.name}' has connectVia at its root: ADF ignores it there, so the call runs on the"
            " factory's AutoResolveIntegrationRuntime, which leaves over the public network unless the factory has"
            " it in its managed virtual network (a storage account with defaultAction Deny refuses the public path)",
            f"Move connectVia into {where}: "
            '"typeProperties": {"connectVia": {"referenceName": ..., "type": "IntegrationRuntimeReference"}}.',
            node=node,
        )
    ref = node.type_properties.get("connectVia")
    known = c.factory.integration_runtimes
    if known is not None and isinstance(ref, Mapping):
        name = ref.get("referenceName")
        if isinstance(name, str) and not _is_dynamic(name) and name not in known and name != DEFAULT_RUNTIME:
            c.add(
                "ADF011",
                jsonpos.join(node.path, ("typeProperties", "connectVia", "referenceName")),
                f"activity '{node.name}' runs on integration runtime '{name}', which the factory does not define",
                f"Use one of: {', '.join(sorted(known)) or DEFAULT_RUNTIME}, or add integrationRuntime/{name}.json.",
                node=node,
            )


def check_web(c: Checker, node: ActivityNode) -> None:
    """ADF020 MSI without resource; ADF021 WebActivity without url/method; ADF072 httpRequestTimeout."""
    tp = node.type_properties
    auth = tp.get("authentication")
    if isinstance(auth, Mapping) and str(auth.get("type", "")).lower() in MSI_TYPES:
        resource = auth.get("resource")
        if resource is None or (isinstance(resource, str) and not resource.strip()):
            c.add(
                "ADF020",
                jsonpos.join(node.path, ("typeProperties", "authentication")),
                f"activity '{node.name}' authenticates with {auth.get('type')} but names no resource: no token"
                " audience, so the call fails",
                'Add "resource" (the token audience), e.g. "https://storage.azure.com/" or'
                ' "https://management.azure.com/".',
                node=node,
            )
    if node.type.lower() != "webactivity":
        return
    for key in ("url", "method"):
        if tp.get(key) in (None, ""):
            c.add(
                "ADF021",
                jsonpos.child(node.path, "typeProperties"),
                f"WebActivity '{node.name}' has no {key}",
                f"Set typeProperties.{key}.",
                node=node,
            )
    timeout = tp.get("httpRequestTimeout")
    if isinstance(timeout, str) and not _is_dynamic(timeout):
        path = jsonpos.join(node.path, ("typeProperties", "httpRequestTimeout"))
        seconds, _ = parse_timespan(timeout)
        if seconds is None:
            c.add(
                "ADF070",
                path,
                f"httpRequestTimeout '{timeout}' of '{node.name}' is not hh:mm:ss",
                "Write it as hh:mm:ss, e.g. 00:05:00.",
                node=node,
            )
        elif seconds > 600:
            c.add(
                "ADF072",
                path,
                f"httpRequestTimeout '{timeout}' of '{node.name}' is above ADF's 10 minute limit",
                "Use at most 00:10:00; for longer work let the endpoint answer 202 + Location (async pattern).",
                node=node,
            )


def _check_timeout(c: Checker, node: ActivityNode, value: Any, path: str, what: str) -> None:
    if not isinstance(value, str) or _is_dynamic(value):
        return
    seconds, strict = parse_timespan(value)
    if seconds is None:
        c.add(
            "ADF070",
            path,
            f"{what} '{value}' of '{node.name}' is not a d.hh:mm:ss or hh:mm:ss timespan",
            "Write it as d.hh:mm:ss (e.g. 0.12:00:00) or hh:mm:ss.",
            node=node,
        )
    elif not strict:
        c.add(
            "ADF074",
            path,
            f"{what} '{value}' of '{node.name}' deviates from the documented pattern"
            " ((d.)hh:mm:ss with two-digit fields); the service parses it, other tools may not",
            "Write it with two-digit hours, minutes and seconds, e.g. 0.00:10:00.",
            node=node,
        )


def check_policy(c: Checker, node: ActivityNode) -> None:
    """ADF070/074 timeouts, ADF071 retryIntervalInSeconds range, ADF073 retry count."""
    policy = node.obj.get("policy")
    if isinstance(policy, Mapping):
        base = jsonpos.child(node.path, "policy")
        _check_timeout(c, node, policy.get("timeout"), jsonpos.child(base, "timeout"), "policy timeout")
        interval = policy.get("retryIntervalInSeconds")
        if isinstance(interval, int) and not isinstance(interval, bool) and not 30 <= interval <= 86400:
            c.add(
                "ADF071",
                jsonpos.child(base, "retryIntervalInSeconds"),
                f"retryIntervalInSeconds {interval} of '{node.name}' is outside ADF's range 30..86400",
                "Use a value between 30 and 86400 seconds.",
                node=node,
            )
        retry = policy.get("retry")
        if isinstance(retry, str) and retry.isdigit():
            retry = int(retry)  # the service reads a digit string as the number
        if (
            retry is not None
            and not _is_dynamic(retry)
            and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0)
        ):
            c.add(
                "ADF073",
                jsonpos.child(base, "retry"),
                f"policy retry {retry!r} of '{node.name}' is not a non-negative integer",
                "Set retry to 0 or more.",
                node=node,
            )
    if node.type.lower() in {"until", "validation"}:
        _check_timeout(
            c,
            node,
            node.type_properties.get("timeout"),
            jsonpos.join(node.path, ("typeProperties", "timeout")),
            "timeout",
        )


def check_dependencies(c: Checker) -> None:
    """ADF050 unknown dependsOn targets, ADF052 bad conditions, ADF051 cycles (per scope)."""
    by_name = c.model.by_name()
    for scope, nodes in c.model.scopes.items():
        index = c.model.scope_index(scope)
        for node in nodes:
            deps = node.obj.get("dependsOn")
            for i, dep in enumerate(deps if isinstance(deps, list) else []):
                path = jsonpos.join(node.path, ("dependsOn", i))
                if not isinstance(dep, Mapping) or not isinstance(dep.get("activity"), str):
                    c.add(
                        "ADF050",
                        path,
                        f"a dependsOn entry of '{node.name}' names no activity",
                        'Each entry needs {"activity": NAME, "dependencyConditions": [...]}.',
                        node=node,
                    )
                    continue
                name = dep["activity"]
                if name not in index:
                    elsewhere = (
                        " (it exists in another container: dependsOn only links activities of the same scope)"
                        if name in by_name
                        else ""
                    )
                    c.add(
                        "ADF050",
                        jsonpos.child(path, "activity"),
                        f"'{node.name}' depends on '{name}', which is not an activity of its scope{elsewhere}",
                        "Fix the name, or depend on an activity of the same container.",
                        node=node,
                    )
                _check_conditions(
                    c, node, dep.get("dependencyConditions"), jsonpos.child(path, "dependencyConditions"), name
                )
        for cycle in find_cycles(nodes):
            first = index[cycle[0]]
            c.add(
                "ADF051",
                jsonpos.child(first.path, "dependsOn"),
                f"dependsOn cycle (each waits for the next): {' -> '.join(cycle)}",
                "Remove one dependency of the cycle; ADF cannot start any activity of it.",
                node=first,
            )


def _check_conditions(c: Checker, node: ActivityNode, conds: Any, path: str, target: str) -> None:
    if not isinstance(conds, list) or not conds:
        c.add(
            "ADF052",
            path,
            f"dependency of '{node.name}' on '{target}' has no dependencyConditions",
            f"Add one of {', '.join(CONDITIONS)}.",
            node=node,
        )
        return
    for i, cond in enumerate(conds):
        if cond in CONDITIONS:
            continue
        match = next((k for k in CONDITIONS if isinstance(cond, str) and k.lower() == cond.lower()), None)
        c.add(
            "ADF052",
            jsonpos.child(path, i),
            f"dependency condition {cond!r} of '{node.name}' on '{target}' is not one of {', '.join(CONDITIONS)}",
            f"Write {match!r} (conditions are case-sensitive)." if match else f"Use one of {', '.join(CONDITIONS)}.",
            node=node,
            severity="warning" if match else None,
        )


def check_variables(c: Checker, node: ActivityNode) -> None:
    """ADF060 undeclared variable, ADF061 append to non-Array, ADF062 variable written in a parallel ForEach."""
    kind = node.type.lower()
    if kind not in {"setvariable", "appendvariable"}:
        return
    tp = node.type_properties
    if tp.get("setSystemVariable") is True:
        return  # pipeline return value (variableName pipelineReturnValue): not a declared variable
    name = tp.get("variableName")
    path = jsonpos.join(node.path, ("typeProperties", "variableName"))
    declared = c.variables
    if declared is None:
        return
    if not isinstance(name, str) or name not in declared:
        c.add(
            "ADF060",
            path,
            f"'{node.name}' sets variable {name!r}, which the pipeline does not declare",
            f"Declare it under properties.variables (declared: {', '.join(sorted(declared)) or 'none'}).",
            node=node,
        )
    elif kind == "appendvariable":
        spec = declared[name]
        vtype = spec.get("type") if isinstance(spec, Mapping) else None
        if isinstance(vtype, str) and vtype.lower() != "array":
            c.add(
                "ADF061",
                path,
                f"'{node.name}' appends to variable '{name}' of type {vtype}",
                "Declare the variable as Array, or use SetVariable.",
                node=node,
            )
    if kind == "appendvariable":
        return  # appends from parallel iterations are not lost (only their order varies)
    for container in node.containers():
        ctp = container.type_properties
        if container.type.lower() == "foreach" and ctp.get("isSequential") is not True and ctp.get("batchCount") != 1:
            c.add(
                "ADF062",
                jsonpos.child(node.path, "typeProperties"),
                f"'{node.name}' sets variable {name!r} inside ForEach '{container.name}', which runs"
                " iterations in parallel: variables are pipeline-wide, so iterations overwrite each other",
                "Set isSequential: true on the ForEach, or move the body into a child pipeline"
                " (ExecutePipeline) whose variables are per run.",
                node=node,
            )
            break


def check_foreach(c: Checker, node: ActivityNode) -> None:
    """ADF075 a ForEach batchCount ADF refuses (max 50; the same check as deploy and createRun)."""
    problem = batch_count_problem(node.type_properties) if node.type.lower() == "foreach" else None
    if problem is not None:
        c.add("ADF075", jsonpos.join(node.path, ("typeProperties", "batchCount")), f"'{node.name}': {problem}",
              "Set batchCount between 1 and 50 (default 20), or split the items across child pipelines.", node=node)


def check_names(c: Checker) -> None:
    """ADF080 duplicate activity names (ADF requires names unique across the whole pipeline)."""
    for name, nodes in c.model.by_name().items():
        for dup in nodes[1:]:
            c.add(
                "ADF080",
                jsonpos.child(dup.path, "name"),
                f"activity name '{name}' is used {len(nodes)} times in pipeline '{c.doc.name}'",
                "Rename the activities so every name is unique in the pipeline (nested ones included).",
                node=dup,
            )


def check_execute_pipeline(c: Checker, node: ActivityNode) -> None:
    """ADF090 ExecutePipeline naming a pipeline the factory (folder) does not have."""
    if node.type.lower() != "executepipeline" or not c.factory.complete:
        return
    ref = node.type_properties.get("pipeline")
    name = ref.get("referenceName") if isinstance(ref, Mapping) else None
    if isinstance(name, str) and name not in c.factory.pipelines:
        c.add(
            "ADF090",
            jsonpos.join(node.path, ("typeProperties", "pipeline", "referenceName")),
            f"'{node.name}' runs pipeline '{name}', which the factory does not have",
            "Fix the name, or add the pipeline under pipeline/.",
            node=node,
        )


def check_aml_job(c: Checker, node: ActivityNode) -> None:
    """AML001-AML007 on a WebActivity that PUTs an Azure ML job (the rules of ``aml lint-job``)."""
    from cicd_tools.aml.lint_job import lint_job_activity

    for f in lint_job_activity(node.obj, str(c.doc.source.path), node.path):
        c.add(f.rule, f.path, f.message, f.fix, node=node, severity="error" if f.severity == "error" else "warning")


ACTIVITY_RULES: tuple[Callable[[Checker, ActivityNode], None], ...] = (
    check_connect_via,
    check_web,
    check_policy,
    check_foreach,
    check_variables,
    check_execute_pipeline,
    check_aml_job,
)
PIPELINE_RULES: tuple[Callable[[Checker], None], ...] = (check_dependencies, check_names)
