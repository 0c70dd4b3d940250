"""Cancel a Data Factory run AND the Azure ML jobs it submitted.

Cancelling a pipeline run does not cancel a job a WebActivity submitted (the job is Azure ML's, not the
factory's): it runs on to its end. So the cancel is three steps: cancel the run (recursively) and watch it
reach Cancelled; find the jobs it and its child runs submitted (``jobs_of_run``: the SubmitJob activities'
recorded PUT URLs, which also name the workspace); cancel each job that has not ended
(``POST {WS}/jobs/{name}/cancel``) and watch it reach Canceled. Everything happens within one ``grace``;
nothing here raises a CicdError: what could not be done is in the result (``leftRunning``, ``errors``).
``adf run`` (on --timeout and on SIGTERM/SIGINT) and ``flow``'s cleanup call ``cancel_run_and_jobs``.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cicd_tools.adf.client import ArmCalls, FactoryApi, FactoryRef
from cicd_tools.support.errors import CicdError

log = logging.getLogger(__name__)

RUN_TERMINAL = ("Succeeded", "Failed", "Cancelled")
FIRST_POLL = 0.1  # seconds before the first re-read of a cancelled run or job; doubled up to ``poll``
JOB_TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
_WS_RE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)$", re.IGNORECASE)


class JobControl(Protocol):
    """What the cancel needs of a workspace (``WorkspaceJobs`` has it)."""

    def get_job(self, name: str) -> dict[str, Any]: ...

    def cancel_job(self, name: str) -> bool: ...

    def close(self) -> None: ...


@dataclass
class JobCancel:
    """One job the run submitted: its status before, whether we asked to cancel it, its status after."""

    name: str
    workspace: str | None
    before: str | None = None
    status: str | None = None
    cancel_sent: bool = False
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in JOB_TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "workspace": self.workspace, "statusBefore": self.before,
                "status": self.status, "cancelSent": self.cancel_sent, "error": self.error}


@dataclass
class CancelResult:
    """What the cancel did: the run's status, each job's, and what is (as far as we know) still running."""

    run_id: str
    run_status: str
    jobs: list[JobCancel] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def left_running(self) -> list[str]:
        return [job.name for job in self.jobs if not job.ended]

    @property
    def cancelled_jobs(self) -> list[str]:
        return [job.name for job in self.jobs if job.cancel_sent]

    def as_dict(self) -> dict[str, Any]:
        return {"runId": self.run_id, "runStatus": self.run_status, "jobs": [j.as_dict() for j in self.jobs],
                "cancelledJobs": self.cancelled_jobs, "leftRunning": self.left_running, "errors": self.errors}

    def jobs_line(self) -> str:
        """What happened to the jobs: cancelled (status before -> after), and any still running."""
        jobs = ", ".join(f"{j.name} ({j.before or '?'} -> {j.status or '?'})" for j in self.jobs if j.cancel_sent)
        text = f"cancelled Azure ML job(s) {jobs}" if jobs else "no Azure ML job of it was still running"
        if self.left_running:
            text += f"; STILL RUNNING: {', '.join(self.left_running)} (cancel them in Azure ML studio)"
        return text

    def line(self) -> str:
        """One line for stderr: the run, the jobs cancelled, what is left."""
        return f"pipeline run {self.run_id}: {self.run_status}; {self.jobs_line()}"


def workspace_jobs_factory(arm_endpoint: str, credential: Any) -> Callable[[str], JobControl]:
    """Build a ``WorkspaceJobs`` for a workspace ARM id, on ``arm_endpoint`` (the endpoint this process uses)."""
    from cicd_tools.aml.jobs_arm import WorkspaceJobs
    from cicd_tools.codeassets.workspace import WorkspaceRef

    def build(workspace_path: str) -> JobControl:
        match = _WS_RE.match(workspace_path)
        if match is None:
            raise CicdError(f"not an Azure ML workspace id: {workspace_path}", code="NotAWorkspace")
        ref = WorkspaceRef(match["sub"], match["rg"], match["ws"], arm_endpoint.rstrip("/"))
        return WorkspaceJobs(ref, credential)

    return build


def cancel_run_and_jobs(
    api: FactoryApi,
    calls: ArmCalls,
    ref: FactoryRef,
    run_id: str,
    *,
    arm_endpoint: str | None = None,
    credential: Any = None,
    jobs_for: Callable[[str], JobControl] | None = None,
    grace: float = 60.0,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CancelResult:
    """Cancel the run (recursively) and every Azure ML job it submitted that is still going; watch both end.

    ``jobs_for`` builds the job client of a workspace ARM id; by default a ``WorkspaceJobs`` on ``arm_endpoint``
    with ``credential`` (the workspace named by the job's PUT URL, reached through this process's endpoint).
    Bounded by ``grace`` seconds; never raises a CicdError.
    """
    from cicd_tools.aml.adf_jobs import jobs_of_run

    deadline = clock() + grace
    result = CancelResult(run_id, "Canceling")
    if jobs_for is None:
        if arm_endpoint is None:
            raise ValueError("cancel_run_and_jobs needs jobs_for or arm_endpoint")
        if credential is None:
            from cicd_tools.credentials import build_credential

            credential = build_credential()
        jobs_for = workspace_jobs_factory(arm_endpoint, credential)
    try:
        calls(f"cancel pipeline run {run_id}", functools.partial(api.cancel_run, ref, run_id, recursive=True),
              deadline=deadline)
    except CicdError as err:
        result.errors.append(f"cancel pipeline run {run_id}: {err.message}")
    # The run first (it must not submit another job), for at most half the grace: the jobs need the rest.
    result.run_status = _watch_run(api, calls, ref, run_id, min(deadline, clock() + grace / 2), result, clock,
                                   sleep, poll)
    clients: dict[str, JobControl] = {}
    try:
        _cancel_jobs(jobs_of_run, api, calls, ref, run_id, deadline, result, clients, jobs_for)
        if result.run_status not in RUN_TERMINAL:  # it may have submitted another job meanwhile
            result.run_status = _watch_run(api, calls, ref, run_id, deadline, result, clock, sleep, poll)
            _cancel_jobs(jobs_of_run, api, calls, ref, run_id, deadline, result, clients, jobs_for)
        _watch_jobs(result, clients, deadline, clock, sleep, poll)
    finally:
        for client in clients.values():
            client.close()
    log.debug("%s", result.line())
    return result


def _watch_run(api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run_id: str, until: float,
               result: CancelResult, clock: Callable[[], float], sleep: Callable[[float], None],
               poll: float) -> str:
    status = result.run_status
    wait = min(poll, FIRST_POLL)  # a cancel usually lands at once: look again soon, then every ``poll`` seconds
    while True:
        try:
            status = str(calls(f"get pipeline run {run_id}", functools.partial(api.get_run, ref, run_id),
                               deadline=until).get("status"))
        except CicdError as err:
            result.errors.append(f"get pipeline run {run_id}: {err.message}")
            return status
        if status in RUN_TERMINAL or clock() + wait > until:
            return status
        sleep(wait)
        wait = min(poll, wait * 2)


def _cancel_jobs(lookup: Callable[..., Any], api: FactoryApi, calls: ArmCalls, ref: FactoryRef, run_id: str,
                 deadline: float, result: CancelResult, clients: dict[str, JobControl],
                 jobs_for: Callable[[str], JobControl]) -> None:
    try:
        submitted = lookup(api, calls, ref, run_id, deadline=deadline)
    except CicdError as err:
        result.errors.append(f"listing the jobs of run {run_id}: {err.message}")
        return
    known = {job.name for job in result.jobs}
    for sub in submitted:
        if sub.name in known:
            continue
        job = JobCancel(sub.name, sub.workspace_path)
        result.jobs.append(job)
        try:
            if sub.workspace_path is None:
                raise CicdError("the submitting activity's URL names no workspace")
            client = clients.get(sub.workspace_path)
            if client is None:
                client = clients[sub.workspace_path] = jobs_for(sub.workspace_path)
            job.before = job.status = _job_status(client, sub.name)
            if not job.ended:
                job.cancel_sent = client.cancel_job(sub.name)
                log.info("cancelling Azure ML job %s (was %s), submitted by run %s", sub.name, job.before,
                         sub.pipeline_run_id)
        except CicdError as err:
            job.error = err.message
            result.errors.append(f"job {sub.name}: {err.message}")


def _watch_jobs(result: CancelResult, clients: dict[str, JobControl], deadline: float,
                clock: Callable[[], float], sleep: Callable[[float], None], poll: float) -> None:
    wait = min(poll, FIRST_POLL)
    while True:
        waiting = [job for job in result.jobs if job.cancel_sent and not job.ended and job.workspace in clients]
        if not waiting:
            return
        for job in waiting:
            try:
                job.status = _job_status(clients[str(job.workspace)], job.name)
            except CicdError as err:
                job.error = err.message
        if all(job.ended for job in waiting) or clock() + wait > deadline:
            return
        sleep(wait)
        wait = min(poll, wait * 2)


def _job_status(client: JobControl, name: str) -> str | None:
    status = (client.get_job(name).get("properties") or {}).get("status")
    return str(status) if status is not None else None
