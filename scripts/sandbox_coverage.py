"""Generate docs/sandbox-coverage.md: every REST operation of the specs and whether the sandbox emulates it.

Modelled on moto's IMPLEMENTATION_COVERAGE.md. For each provider folder of ``../shared/specs`` (storage,
datafactory, machinelearning) it lists every operation the spec excerpts hold (operationId, method, path), plus
the operations of the same providers that the SDKs call and the excerpts leave out (``UPSTREAM`` below: the same
specification files upstream, named in ../shared/specs/SOURCES.md). An operation is *emulated* when the sandbox's
router (``runtime.ROUTE_MODULES``) has a route for it whose handler is not a ``not_implemented`` stub; every other
operation answers 501 ``NotImplemented`` naming it.

    python scripts/sandbox_coverage.py            # rewrite docs/sandbox-coverage.md
    python scripts/sandbox_coverage.py --check    # exit 1 when the page is stale

The specs folder is ``../shared/specs`` beside the checkout, or ``$SHARED_DIR/specs``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "sandbox-coverage.md"
METHODS = ("get", "put", "post", "patch", "delete", "head")
PROVIDERS = {  # specs folder -> (namespace, api-version the page's clients send)
    "storage": ("Microsoft.Storage", "2026-09-01"),
    "datafactory": ("Microsoft.DataFactory", "2018-06-01"),
    "machinelearning": ("Microsoft.MachineLearningServices", "2025-09-01"),
}
_RG = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers"
_ACCOUNT = _RG + "/Microsoft.Storage/storageAccounts/{accountName}"
_FACTORY = _RG + "/Microsoft.DataFactory/factories/{factoryName}"
_WS = _RG + "/Microsoft.MachineLearningServices/workspaces/{workspaceName}"
# Operations the excerpts leave out, from the same upstream files (storage openapi.json 2026-09-01, datafactory.json
# 2018-06-01, machineLearningServices.json / mfe.json 2025-09-01): what azure-mgmt-storage, azure-mgmt-datafactory
# and azure-ai-ml call, and a few neighbours the sandbox does not emulate.
UPSTREAM: dict[str, tuple[tuple[str, str, str], ...]] = {
    "storage": (
        ("StorageAccounts_GetProperties", "GET", _ACCOUNT),
        ("StorageAccounts_Create", "PUT", _ACCOUNT),
        ("StorageAccounts_List", "GET", "/subscriptions/{subscriptionId}/providers/Microsoft.Storage/storageAccounts"),
        ("StorageAccounts_ListByResourceGroup", "GET", _RG + "/Microsoft.Storage/storageAccounts"),
        ("StorageAccounts_ListKeys", "POST", _ACCOUNT + "/listKeys"),
        ("StorageAccounts_RegenerateKey", "POST", _ACCOUNT + "/regenerateKey"),
        ("StorageAccounts_CheckNameAvailability", "POST",
         "/subscriptions/{subscriptionId}/providers/Microsoft.Storage/checkNameAvailability"),
    ),
    "datafactory": (
        ("Factories_List", "GET", "/subscriptions/{subscriptionId}/providers/Microsoft.DataFactory/factories"),
        ("Factories_ListByResourceGroup", "GET", _RG + "/Microsoft.DataFactory/factories"),
        ("Factories_Get", "GET", _FACTORY),
        ("Factories_CreateOrUpdate", "PUT", _FACTORY),
        ("Factories_Update", "PATCH", _FACTORY),
        ("Factories_Delete", "DELETE", _FACTORY),
        ("Factories_GetDataPlaneAccess", "POST", _FACTORY + "/getDataPlaneAccess"),
        ("Pipelines_ListByFactory", "GET", _FACTORY + "/pipelines"),
        ("Pipelines_Get", "GET", _FACTORY + "/pipelines/{pipelineName}"),
        ("Pipelines_CreateOrUpdate", "PUT", _FACTORY + "/pipelines/{pipelineName}"),
        ("Pipelines_Delete", "DELETE", _FACTORY + "/pipelines/{pipelineName}"),
        ("Triggers_Start", "POST", _FACTORY + "/triggers/{triggerName}/start"),
        ("Triggers_Stop", "POST", _FACTORY + "/triggers/{triggerName}/stop"),
        ("TriggerRuns_QueryByFactory", "POST", _FACTORY + "/queryTriggerRuns"),
        ("IntegrationRuntimes_GetStatus", "POST",
         _FACTORY + "/integrationRuntimes/{integrationRuntimeName}/getStatus"),
        ("DataFlows_Get", "GET", _FACTORY + "/dataflows/{dataFlowName}"),
    ),
    "machinelearning": (
        ("Workspaces_Get", "GET", _WS),
        ("Jobs_List", "GET", _WS + "/jobs"),
        ("Workspaces_ListKeys", "POST", _WS + "/listKeys"),
        ("Compute_List", "GET", _WS + "/computes"),
        ("Compute_Get", "GET", _WS + "/computes/{computeName}"),
        ("Compute_Delete", "DELETE", _WS + "/computes/{computeName}"),
        ("VirtualMachineSizes_List", "GET",
         "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/locations/{location}/vmSizes"),
        ("ModelContainers_List", "GET", _WS + "/models"),
        ("ModelContainers_Get", "GET", _WS + "/models/{name}"),
    ),
}
_NOTE_PATH = re.compile(r"paths\['(?P<path>/[^']+)'\]")
_METHOD_KEY = re.compile(r"^(?P<method>get|put|post|patch|delete|head)(\(.*\))?$")


@dataclass(frozen=True)
class Operation:
    provider: str  # the specs folder
    operation_id: str | None  # None when the excerpt cut it off
    method: str
    path: str
    source: str  # the specs file (relative to the specs folder) or "upstream"


def specs_dir() -> Path:
    """``$SHARED_DIR/specs``, else ``../shared/specs`` beside the checkout."""
    shared = os.environ.get("SHARED_DIR")
    return (Path(shared) if shared else REPO.parent / "shared") / "specs"


def _file_operations(provider: str, path: Path, relative: str) -> Iterator[Operation]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key.startswith("/") and isinstance(value, dict):  # a paths object
            for method in METHODS:
                op = value.get(method)
                if isinstance(op, dict):
                    yield Operation(provider, op.get("operationId"), method.upper(), key, relative)
    note = _NOTE_PATH.search(str(data.get("_note", "")))
    if note is None:
        return
    for key, value in data.items():  # an excerpt of one path's methods: the path is in its note
        match = _METHOD_KEY.match(key)
        if match and isinstance(value, dict):
            yield Operation(provider, value.get("operationId"), match["method"].upper(), note["path"], relative)


def spec_operations(specs: Path) -> list[Operation]:
    """Every operation of the excerpts and of ``UPSTREAM``, one row per (method, path), sorted per provider."""
    found: dict[tuple[str, str, str], Operation] = {}
    for provider in PROVIDERS:
        folder = specs / provider
        for path in sorted(folder.glob("*.json")):  # examples/ hold requests and answers, not operations
            for op in _file_operations(provider, path, f"{provider}/{path.name}"):
                found.setdefault((provider, op.method, _normal(op.path)), op)
        for operation_id, method, route in UPSTREAM[provider]:
            key = (provider, method, _normal(route))
            if key in found and found[key].operation_id is None:  # name what the excerpt cut off
                found[key] = Operation(provider, operation_id, method, route, found[key].source)
            found.setdefault(key, Operation(provider, operation_id, method, route, "upstream"))
    return sorted(found.values(), key=lambda o: (o.provider, _normal(o.path), METHODS.index(o.method.lower())))


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path).lower()


def sample_path(path: str) -> str:
    """The path with its parameters filled as the sandbox's pre-provisioned resources name them."""
    from cicd_tools.sandbox.layout import SandboxLayout

    layout = SandboxLayout()
    known = {"subscriptionId": layout.subscription_id, "resourceGroupName": layout.resource_group,
             "accountName": layout.storage_account, "factoryName": layout.factory,
             "workspaceName": layout.workspace, "location": layout.location}
    return re.sub(r"\{(?P<name>[^}]+)\}", lambda m: known.get(m["name"], "cicd-coverage-sample"), path)


def router() -> object:
    from cicd_tools.sandbox.runtime import ROUTE_MODULES
    from cicd_tools.sandbox.server import Router

    table = Router()
    for name in ROUTE_MODULES:
        table.include(importlib.import_module(name).routes)
    return table


def emulated(table: object, op: Operation) -> bool:
    """Whether the router serves ``op`` with a real handler (not a 501 stub, not an unserved factory child)."""
    from cicd_tools.sandbox.datafactory.store import KINDS
    from cicd_tools.sandbox.server import Router

    assert isinstance(table, Router)
    route, params, _ = table.resolve(op.method, sample_path(op.path))
    if route is None or route.handler.__name__ == "not_implemented":
        return False
    return "kind" not in params or params["kind"].lower() in KINDS


def render(specs: Path) -> str:
    table = router()
    ops = spec_operations(specs)
    lines = [
        "# Sandbox coverage",
        "",
        "<!-- Generated by scripts/sandbox_coverage.py from ../shared/specs; do not edit by hand. -->",
        "",
        "Which REST operations of the specified providers the sandbox emulates, in the manner of moto's",
        "`IMPLEMENTATION_COVERAGE.md`. An emulated operation answers as Azure does (200, or Azure's documented error",
        "for the request); any other operation answers **501 `NotImplemented`** naming it, never a 404 a client",
        "would take for a missing resource. *Source* is the spec excerpt in `../shared/specs` the row comes from, or",
        "`upstream` for an operation of the same specification file the excerpts leave out.",
        "",
    ]
    for provider, (namespace, version) in PROVIDERS.items():
        rows = [o for o in ops if o.provider == provider]
        done = [o for o in rows if emulated(table, o)]
        lines += [f"## {namespace} ({version})", "",
                  f"{len(done)} of {len(rows)} operations emulated.", "",
                  "| | operationId | method | path | source |", "|---|---|---|---|---|"]
        for op in rows:
            mark = "[x]" if op in done else "[ ]"
            name = op.operation_id or "(not named in the excerpt)"
            lines.append(f"| {mark} | {name} | {op.method} | `{op.path}` | {op.source} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/sandbox-coverage.md is stale")
    args = parser.parse_args(argv)
    specs = specs_dir()
    if not specs.is_dir():
        print(f"no specs folder at {specs}; set SHARED_DIR to the folder holding specs/", file=sys.stderr)
        return 2
    text = render(specs)
    if args.check:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(REPO)} is stale: run python scripts/sandbox_coverage.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
