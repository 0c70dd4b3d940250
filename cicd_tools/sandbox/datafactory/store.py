"""The sandbox's Data Factory state: the published factory (its resources) and its pipeline runs.

Kept beside the hub (like ``aml.aml_state``), not in ``CloudState``: only this provider reads it. The
factory ``adf-sandbox`` is pre-provisioned with what the shipped ``adf/`` folder declares and the
infrastructure team creates outside the factory's Git repo: the managed virtual network ``default``, the
managed VNet integration runtime ``ManagedVnetIR`` and an **Approved** managed private endpoint to the
pointer account's ``blob`` sub-resource. A private endpoint created through the API starts ``Pending``
(the storage owner approves it), as in Azure; ``/_sandbox/datafactory/...`` switches its state.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.adf.run_model import ActivityRun, iso
from cicd_tools.sandbox.server import Hub

PROVIDER = "Microsoft.DataFactory"
# URL segment -> (ARM type suffix, SDK/route spelling). Child kinds of a factory that are stored as published.
KINDS: dict[str, str] = {
    "pipelines": "pipelines",
    "linkedservices": "linkedservices",
    "datasets": "datasets",
    "integrationruntimes": "integrationruntimes",
    "triggers": "triggers",
    "managedvirtualnetworks": "managedVirtualNetworks",
    "globalparameters": "globalParameters",
}
MPE_KIND = "managedprivateendpoints"
MANAGED_VNET = "default"
MANAGED_IR = "ManagedVnetIR"
POINTER_MPE = "mpe-mlstorage-blob"
TERMINAL = ("Succeeded", "Failed", "Cancelled")
DEFAULT_PAGE_SIZE = 100


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RunRecord:
    """One pipeline run (top-level or an ExecutePipeline child) as ``pipelineruns/{id}`` reports it."""

    run_id: str
    pipeline_name: str
    parameters: dict[str, Any]
    invoked_by: dict[str, Any]
    status: str = "Queued"
    message: str = ""
    run_start: dt.datetime | None = None
    run_end: dt.datetime | None = None
    last_updated: dt.datetime = field(default_factory=utc_now)
    parent_run_id: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    children: list[str] = field(default_factory=list)
    # activity run id -> (the latest state of that activity run, when it was last updated)
    activities: dict[str, tuple[ActivityRun, dt.datetime]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``PipelineRun`` body (spec: definitions part2_runs; example PipelineRuns_Get.json)."""
        end = self.run_end
        return {
            "runId": self.run_id,
            "runGroupId": self.run_id,
            "isLatest": True,
            "pipelineName": self.pipeline_name,
            "parameters": {k: v if isinstance(v, str) else _json_text(v) for k, v in self.parameters.items()},
            "runDimensions": {},
            "invokedBy": dict(self.invoked_by),
            "lastUpdated": iso(self.last_updated),
            "runStart": iso(self.run_start) if self.run_start else None,
            "runEnd": iso(end) if end else None,
            "durationInMs": int((end - self.run_start).total_seconds() * 1000) if end and self.run_start else None,
            "status": self.status,
            "message": self.message,
            "annotations": [],
        }


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


@dataclass
class FactoryState:
    """One factory: its published resources and its runs, behind one lock."""

    name: str
    principal: str
    location: str
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, lower name) -> body
    runs: dict[str, RunRecord] = field(default_factory=dict)
    page_size: int = DEFAULT_PAGE_SIZE
    created: str = "2026-01-05T09:00:00.0000000Z"


@dataclass
class DataFactoryState:
    """Every factory of the sandbox (one, pre-provisioned)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    factories: dict[str, FactoryState] = field(default_factory=dict)


_STATES: weakref.WeakKeyDictionary[Any, DataFactoryState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def df_state(hub: Hub) -> DataFactoryState:
    """The Data Factory state of this sandbox (created pre-provisioned on first use)."""
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = _initial(hub)
        return state


def reset(hub: Hub) -> None:
    """Back to the pre-provisioned factory; runs in flight are cancelled."""
    with _STATES_LOCK:
        old = _STATES.get(hub.state)
        _STATES[hub.state] = _initial(hub)
    if old is not None:
        for factory in old.factories.values():
            for run in factory.runs.values():
                run.cancel.set()


def factory_id(hub: Hub, factory: str) -> str:
    return f"{hub.layout.resource_group_id}/providers/{PROVIDER}/factories/{factory}"


def resource_id(hub: Hub, factory: str, kind: str, name: str, parent: str | None = None) -> str:
    base = factory_id(hub, factory)
    if kind == MPE_KIND:
        return f"{base}/managedVirtualNetworks/{parent}/managedPrivateEndpoints/{name}"
    return f"{base}/{KINDS[kind]}/{name}"


def resource_type(kind: str) -> str:
    if kind == MPE_KIND:
        return f"{PROVIDER}/factories/managedVirtualNetworks/managedPrivateEndpoints"
    return f"{PROVIDER}/factories/{KINDS[kind]}"


def envelope(hub: Hub, factory: str, kind: str, name: str, properties: Any, *, parent: str | None = None,
             etag: str | None = None) -> dict[str, Any]:
    """A child resource as ARM answers it: ``{id, name, type, etag, properties}``."""
    return {
        "id": resource_id(hub, factory, kind, name, parent),
        "name": name,
        "type": resource_type(kind),
        "etag": etag or uuid.uuid4().hex,
        "properties": copy.deepcopy(properties),
    }


def mpe_properties(private_link_resource_id: str, group_id: str, status: str, account: str | None) -> dict[str, Any]:
    """A managed private endpoint's properties, with the fields the service fills in."""
    return {
        "privateLinkResourceId": private_link_resource_id,
        "groupId": group_id,
        "connectionState": {"status": status, "description": "", "actionsRequired": ""},
        "fqdns": [f"{account}.{group_id}.core.windows.net"] if account else [],
        "provisioningState": "Succeeded",
        "isReserved": False,
    }


def _initial(hub: Hub) -> DataFactoryState:
    layout = hub.layout
    factory = FactoryState(layout.factory, layout.factory_principal, layout.location)

    def put(kind: str, name: str, properties: dict[str, Any], parent: str | None = None) -> None:
        key = (kind, f"{parent}/{name}".lower() if parent else name.lower())
        factory.resources[key] = envelope(hub, factory.name, kind, name, properties, parent=parent)

    put("managedvirtualnetworks", MANAGED_VNET, {"vNetId": str(uuid.uuid5(uuid.NAMESPACE_URL, layout.factory)),
                                                  "alias": f"{layout.factory}_{MANAGED_VNET}"})
    put("integrationruntimes", MANAGED_IR, {
        "type": "Managed",
        "typeProperties": {"computeProperties": {"location": "AutoResolve", "dataFlowProperties": {
            "computeType": "General", "coreCount": 8, "timeToLive": 10}}},
        "managedVirtualNetwork": {"type": "ManagedVirtualNetworkReference", "referenceName": MANAGED_VNET},
    })
    account = layout.storage_account
    put(MPE_KIND, POINTER_MPE, mpe_properties(layout.account_id(account), "blob", "Approved", account),
        parent=MANAGED_VNET)
    put("globalparameters", "default", {})
    return DataFactoryState(factories={factory.name.lower(): factory})
