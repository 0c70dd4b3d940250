"""Microsoft.DataFactory (2018-06-01) in the sandbox: the published factory, and runs executed locally.

``store`` holds the state (pre-provisioned factory ``adf-sandbox`` with its managed VNet, managed VNet IR and
an Approved private endpoint to the pointer account), ``resources`` the CRUD routes, ``runs`` createRun /
pipelineruns / cancel / queries, ``network`` how activities reach the network. Control switches live under
``/_sandbox/datafactory/``: a private endpoint's approval state, the page size of run queries, and whether
storage's trusted-services exception admits the factory's WebActivity calls (``storage.trusted``; off by default).
"""

from __future__ import annotations

from cicd_tools.sandbox.control import _guard
from cicd_tools.sandbox.datafactory import resources as _res
from cicd_tools.sandbox.datafactory import runs as _runs
from cicd_tools.sandbox.datafactory.store import MPE_KIND, FactoryState, df_state
from cicd_tools.sandbox.datafactory.store import reset as _reset_store
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response
from cicd_tools.sandbox.storage.trusted import DATA_FACTORY, is_admitted, set_admitted

F = _res.FACTORY
_MPE = F + r"/managedVirtualNetworks/(?P<vnet>[^/]+)/managedPrivateEndpoints"
_RUN = F + r"/pipelineruns/(?P<run>[^/]+)"


def _control_factory(hub: Hub) -> FactoryState:
    state = df_state(hub)
    with state.lock:
        return state.factories[hub.layout.factory.lower()]


def set_endpoint_state(req: Request, hub: Hub) -> Response:
    """``PUT /_sandbox/datafactory/private-endpoints/{name}`` ``{"status": "Approved"|"Pending"|"Rejected"}``."""
    body = req.json() or {}
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("Approved", "Pending", "Rejected"):
        raise ValueError("status must be Approved, Pending or Rejected")
    factory = _control_factory(hub)
    with df_state(hub).lock:
        found = [v for (k, name), v in factory.resources.items()
                 if k == MPE_KIND and name.split("/", 1)[1] == req.params["name"].lower()]
        if not found:
            raise HttpError(arm_error(404, "NotFound", f"no managed private endpoint {req.params['name']!r}"))
        for body_ in found:
            body_["properties"]["connectionState"]["status"] = status
    return json_response(200, {"name": req.params["name"], "status": status})


def set_page_size(req: Request, hub: Hub) -> Response:
    """``PUT /_sandbox/datafactory/page-size`` ``{"size": N}``: rows per page of run queries (paging tests)."""
    body = req.json() or {}
    size = int(body["size"]) if isinstance(body, dict) and "size" in body else 0
    if size < 1:
        raise ValueError("size must be a positive integer")
    factory = _control_factory(hub)
    with df_state(hub).lock:
        factory.page_size = size
    return json_response(200, {"size": size})


def set_trusted_bypass(req: Request, hub: Hub) -> Response:
    """``PUT /_sandbox/datafactory/trusted-service-bypass`` ``{"enabled": bool}``: whether an account's
    ``bypass: AzureServices`` admits the factory's managed-identity calls over the public path (docs silent)."""
    body = req.json() or {}
    enabled = body.get("enabled") if isinstance(body, dict) else None
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    set_admitted(hub, DATA_FACTORY, enabled)
    return json_response(200, {"enabled": is_admitted(hub, DATA_FACTORY)})


def reset(hub: Hub) -> None:
    """Back to the pre-provisioned factory; the trusted-services switch back to its default (off)."""
    _reset_store(hub)
    set_admitted(hub, DATA_FACTORY, False)


_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
routes = [
    Route("GET", F, _res.get_factory),
    Route("PUT", F, _res.put_factory),
    Route("PATCH", F, _res.put_factory),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.DataFactory"
          r"/factories", _res.list_factories),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.DataFactory/factories", _res.list_factories),
    Route("POST", F + r"/pipelines/(?P<name>[^/]+)/createRun", _runs.create_run),
    Route("GET", _RUN, _runs.get_run),
    Route("POST", _RUN + r"/cancel", _runs.cancel_run),
    Route("POST", _RUN + r"/queryActivityruns", _runs.query_activity_runs),
    Route("POST", F + r"/queryPipelineRuns", _runs.query_pipeline_runs),
    Route("POST", F + r"/triggers/(?P<name>[^/]+)/(?P<action>start|stop)", _res.trigger_action),
    Route("POST", F + r"/integrationRuntimes/(?P<name>[^/]+)/getStatus", _res.runtime_status),
    Route("GET", _MPE, _res.list_children),
    Route("GET", _MPE + r"/(?P<name>[^/]+)", _res.get_child),
    Route("PUT", _MPE + r"/(?P<name>[^/]+)", _res.put_child),
    Route("DELETE", _MPE + r"/(?P<name>[^/]+)", _res.delete_child),
    Route("GET", F + r"/(?P<kind>[A-Za-z]+)", _res.list_children),
    Route("GET", F + r"/(?P<kind>[A-Za-z]+)/(?P<name>[^/]+)", _res.get_child),
    Route("PUT", F + r"/(?P<kind>[A-Za-z]+)/(?P<name>[^/]+)", _res.put_child),
    Route("DELETE", F + r"/(?P<kind>[A-Za-z]+)/(?P<name>[^/]+)", _res.delete_child),
    *(Route(method, F + r"/.+", _res.not_implemented) for method in _METHODS),
    Route("PUT", r"/_sandbox/datafactory/private-endpoints/(?P<name>[^/]+)", _guard(set_endpoint_state),
          "control"),
    Route("PUT", r"/_sandbox/datafactory/page-size", _guard(set_page_size), "control"),
    Route("PUT", r"/_sandbox/datafactory/trusted-service-bypass", _guard(set_trusted_bypass), "control"),
]
