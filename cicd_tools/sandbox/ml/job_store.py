"""The sandbox's Azure ML job records: what the job routes store and the local runner updates."""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.sandbox.server import Hub

TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")


@dataclass(frozen=True)
class JobTiming:
    """How long a job dwells in each lifecycle state the service reports (seconds).

    ``queued``: Queued before the compute takes it; ``preparing``: Preparing (image pull, data mounts) before
    Running; ``min_running``: Running lasts at least this long (the command may take longer); ``finalizing``:
    Finalizing (outputs and logs uploaded) before the verdict; ``cancel``: CancelRequested before Canceled.
    ``FAST`` keeps tests quick; ``REALISTIC`` is the order of magnitude a Kubernetes compute shows (minutes
    before a job runs, as Azure ML's pull of the environment image and the node scheduling take).
    """

    queued: float = 0.2
    preparing: float = 0.2
    min_running: float = 0.0
    finalizing: float = 0.2
    cancel: float = 0.3

    def to_json(self) -> dict[str, float]:
        return {"queued": self.queued, "preparing": self.preparing, "minRunning": self.min_running,
                "finalizing": self.finalizing, "cancel": self.cancel}


FAST = JobTiming()
REALISTIC = JobTiming(queued=30.0, preparing=90.0, min_running=0.0, finalizing=20.0, cancel=15.0)
TIMING_PROFILES = {"fast": FAST, "realistic": REALISTIC}


@dataclass
class JobRecord:
    """One job: the stored resource body, its status and what the run produced."""

    name: str
    body: dict[str, Any]  # the resource's ``properties`` as the service stores them
    status: str = "NotStarted"
    created_at: str = ""
    created_by: str = ""
    sequence: int = 0
    error: dict[str, str] | None = None
    log: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    start_time: str | None = None
    end_time: str | None = None
    log_uploaded: bool = False  # std_log.txt is on the workspace datastore (run history lists it)
    history: list[tuple[str, str]] = field(default_factory=list)  # (status, when): every status it passed through


@dataclass
class JobsState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    sequence: int = 0
    generation: int = 0  # bumped by reset: runners of an older generation stop writing
    timing: JobTiming = FAST  # the control switch ``PUT /_sandbox/machinelearning/job-timing`` (reset: FAST)


_STATES: weakref.WeakKeyDictionary[Any, JobsState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def jobs_state(hub: Hub) -> JobsState:
    with _STATES_LOCK:
        state = _STATES.get(hub.state)
        if state is None:
            state = _STATES[hub.state] = JobsState()
        return state


def set_status(record: JobRecord, status: str, when: str) -> None:
    """Move ``record`` to ``status`` and remember the step (the caller holds the state's lock)."""
    record.status = status
    record.history.append((status, when))


def reset(hub: Hub) -> None:
    """Cancel running jobs and forget every job (the sandbox reset hook)."""
    with _STATES_LOCK:
        old = _STATES.get(hub.state)
        _STATES[hub.state] = JobsState(generation=(old.generation + 1) if old else 0)
    if old is not None:
        for record in old.jobs.values():
            record.cancel.set()


def resolve_asset_uri(hub: Hub, uri: str) -> str | None:
    """The datastore path an input ``uri`` names, or None when the sandbox cannot resolve it.

    ``azureml://datastores/workspaceblobstore/paths/{p}`` and ``azureml://jobs/{job}/outputs/{out}[/paths/{p}]``
    (the latter: the output of an earlier job of this workspace, known once that job was submitted).
    """
    match = re.match(r"^azureml://datastores/workspaceblobstore/paths/(?P<path>.+)$", uri)
    if match:
        return match["path"]
    match = re.match(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<out>[^/]+)(?:/paths/(?P<path>.*))?$", uri)
    if match:
        state = jobs_state(hub)
        with state.lock:
            record = state.jobs.get(match["job"])
            output = (record.body.get("outputs") or {}).get(match["out"]) if record else None
        if not isinstance(output, dict) or not isinstance(output.get("uri"), str):
            return None
        base = resolve_asset_uri(hub, output["uri"])
        if base is None:
            return None
        return base.rstrip("/") + "/" + (match["path"] or "")
    return None


def output_base(name: str, output: str) -> str:
    """Where the service puts an output without a ``uri``: ``azureml/{job}/{output}/`` on the default datastore."""
    return f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{output}/"


def log_blob(name: str) -> str:
    """Where a job's ``user_logs/std_log.txt`` lives in the ``workspaceartifactstore`` container (``azureml``),
    where ``jobs.download`` looks: ``ExperimentRun/dcid.{job}/`` (``_job_operations.py`` ``_get_named_output_uri``)."""
    return f"ExperimentRun/dcid.{name}/user_logs/std_log.txt"
