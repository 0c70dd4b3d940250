"""``aml verify`` and ``aml lint-job`` as operations: typed requests in, typed results out (no argparse, no
printing).

A job is held to one expected code id: the flow's own registration of the asset (``expected_code_ids``), else
the pointer's publication at the job's creation (``pointers``), else ``expect_code_id``. With the flow's own
registration, what the submitting ADF run read from the pointer (its pointer-read activity's output, seen through
ARM) and, when the pointer account answers, the pointer's current value are read as well: when either names another
version, the verdict says "the pointer moved to X meanwhile" (another publisher moved it; the job may have read
that one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cicd_tools.aml.verify import JobVerdict
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.support.errors import ContractViolation, ExitCode, UsageError

if TYPE_CHECKING:
    from cicd_tools.aml.lint_job import JobFinding

T = TypeVar("T")
log = logging.getLogger("cicd_tools.aml")


@dataclass(frozen=True)
class VerifyRequest:
    workspace: WorkspaceRef
    factory: str | None = None
    adf_run_id: str | None = None
    jobs: tuple[str, ...] = ()
    pointers: tuple[str, ...] = ()
    expect_code_id: str | None = None
    expected_code_ids: Mapping[str, str] = field(default_factory=dict)  # asset -> the assetId WE registered
    timeout: float | None = None  # one deadline (and adf run's retry policy) for every call; None: no deadline


@dataclass(frozen=True)
class VerifyResult:
    verdicts: tuple[JobVerdict, ...]
    expected_code_id: str | None
    pointer_moved: Mapping[str, str] = field(default_factory=dict)  # asset -> the pointer's assetId now

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        if any(not v.code_id_matches or v.hash_matches is False for v in self.verdicts):
            return int(ExitCode.CONTRACT)
        if any(v.status != "Completed" for v in self.verdicts):
            return int(ExitCode.RUN_FAILED)
        return 0

    def to_json(self) -> dict[str, Any]:
        from cicd_tools.aml.verify import evidence

        data = evidence(self.verdicts, self.expected_code_id)
        if self.pointer_moved:
            data["pointerMoved"] = dict(self.pointer_moved)
        return data


def validate_pointer_names(pointers: tuple[str, ...]) -> None:
    from cicd_tools.pointer.contract import ASSET_NAME_RE

    for asset in pointers:
        if not re.match(ASSET_NAME_RE, asset):
            raise UsageError(f"--pointer {asset!r} is not a code asset name",
                             hint="Pass the asset whose latest.json CI publishes, e.g. --pointer training-code.")


def pointer_history(container: Any, asset: str) -> list[Any]:
    """Every publication of ``asset``'s pointer, newest first. Raises: ContractViolation when there is none."""
    from cicd_tools.pointer.contract import list_history, missing_pointer_hint

    validate_pointer_names((asset,))
    records = [pointer for _, pointer in list_history(container, asset)]
    if not records:
        raise ContractViolation(f"pointer {asset} has no publication history in the pointer container",
                                hint=missing_pointer_hint(container, asset), code="PointerHistoryEmpty")
    return records


def pointer_for(job: Mapping[str, Any], pointers: list[str], run_asset: str | None) -> tuple[str | None, str | None]:
    """Which pointer a job is held to, and a note when none fits.

    One pointer: every job. Several: the asset the submitting ADF run named (its ``assetName`` parameter: what the
    job was *meant* to run), else the asset the job's codeId names.
    """
    if len(pointers) == 1:
        return pointers[0], None
    if run_asset is not None:
        if run_asset in pointers:
            return run_asset, None
        return None, f"the ADF run submitted this job for asset {run_asset}, which is none of --pointer {pointers}"
    code_id = str((job.get("properties") or {}).get("codeId") or "")
    match = re.search(r"/codes/([^/]+)/versions/", code_id, re.IGNORECASE)
    ran = match.group(1) if match else None
    if ran in pointers:
        return ran, None
    return None, f"the job's codeId names asset {ran}, which is none of --pointer {pointers}"


def verify_jobs(request: VerifyRequest, credential: Any, *, container: Callable[[], Any] | None = None) -> VerifyResult:
    """Judge each job (of the ADF run, or named). ``container`` builds the pointer container client when needed.

    Raises: UsageError, ConfigError, ContractViolation (no jobs in the run, an empty pointer history), AzureError.
    """
    from cicd_tools.adf.client import ArmCalls
    from cicd_tools.aml.adf_jobs import jobs_of_adf_run
    from cicd_tools.aml.jobs_arm import WorkspaceJobs, read_output_evidence
    from cicd_tools.aml.verify import judge_job, published_at
    from cicd_tools.storage.deadline import Deadline, within

    workspace = request.workspace
    deadline = Deadline(request.timeout) if request.timeout else None
    calls = ArmCalls(deadline=deadline.end if deadline else None)  # transient faults retried within the deadline

    def bounded(what: str, read: Callable[[], T]) -> T:
        return within(deadline, what, read) if deadline is not None else read()

    pointers: list[str] = list(dict.fromkeys(request.pointers))
    validate_pointer_names(tuple(pointers))
    # A job held to our own registration needs no pointer history (and the data-plane access it takes: flow has
    # closed its firewall rule by then); the others are read first, so a mistyped pointer fails before any job.
    histories = {asset: bounded(f"reading the publication history of pointer {asset}",
                                lambda asset=asset: pointer_history(_need(container)(), asset))  # type: ignore[misc]
                 for asset in pointers if asset not in request.expected_code_ids}
    if request.adf_run_id is not None:
        submitted = jobs_of_adf_run(request.factory, request.adf_run_id, workspace, credential,
                                    direct="cicd-tools aml verify --job NAME", calls=calls)
        names = [job.name for job in submitted]
        run_assets = {job.name: job.asset_name for job in submitted}
        run_reads = {job.name: job.pointer_read for job in submitted}
    else:
        names, run_assets, run_reads = list(dict.fromkeys(request.jobs)), {}, {}
    verdicts: list[JobVerdict] = []
    held_to: set[str] = set()
    read_moved: dict[str, str] = {}  # asset -> what the submitting run read, when not our registration
    with WorkspaceJobs(workspace, credential, retry=calls) as jobs:
        hashes: dict[tuple[str, str], str | None] = {}

        def registered_hash(name: str, version: str) -> str | None:
            if (name, version) not in hashes:
                info = jobs.get_version(name, version)
                hashes[(name, version)] = info.hash_sha256 if info else None
            return hashes[(name, version)]

        for name in names:
            job = jobs.get_job(name)
            created = (job.get("systemData") or {}).get("createdAt")
            note = None
            expected: str | None
            if pointers:
                asset, note = pointer_for(job, pointers, run_assets.get(name))
                if asset and asset in request.expected_code_ids:
                    expected = request.expected_code_ids[asset]  # this flow's own registration, not the pointer
                    held_to.add(asset)
                    read = run_reads.get(name)
                    if read and read.rstrip("/").lower() != expected.rstrip("/").lower():
                        read_moved[asset] = read
                else:
                    record = published_at(histories[asset], created) if asset else None
                    expected = record.assetId if record else None
                    if asset and record is None:
                        note = f"no publication of pointer {asset} at or before the job's creation ({created})"
            else:
                expected = request.expect_code_id
            found = bounded(f"reading the evidence job {name} wrote",
                            lambda job=job: read_output_evidence(jobs, job, credential))  # type: ignore[misc]
            verdict = judge_job(job, expected_code_id=expected, code_hash=found.code_hash,
                                registered_hash=registered_hash, note=note or found.note)
            verdicts.append(verdict)
            log.info("job %s: %s, codeId %s (expected %s)", name, verdict.status, verdict.code_id, expected)
    # What the run read (through ARM: no data-plane access, so it holds after flow's early close) comes first;
    # the pointer's value now is read for the other assets when the pointer account answers (best effort).
    rest = sorted(held_to - set(read_moved))
    moved = {**(_pointers_moved(_need(container)(), request.expected_code_ids, rest) if rest else {}), **read_moved}
    for asset, read in read_moved.items():
        log.warning("pointer %s named %s when the run read it (this flow registered %s): another publisher moved"
                    " it meanwhile", asset, read, request.expected_code_ids[asset])
    if moved:
        verdicts = [_with_moved_note(v, moved) for v in verdicts]
    expected_ids = {v.expected_code_id for v in verdicts}
    top = request.expect_code_id or (expected_ids.pop() if len(expected_ids) == 1 else None)
    return VerifyResult(tuple(verdicts), top, moved)


def _need(container: Callable[[], Any] | None) -> Callable[[], Any]:
    if container is None:
        raise UsageError("verifying against a pointer needs the pointer container (--account / --container)")
    return container


def _pointers_moved(container: Any, expected: Mapping[str, str], assets: list[str]) -> dict[str, str]:
    """Each asset whose pointer now names another asset id than the one we registered (best effort)."""
    from cicd_tools.pointer.contract import read_pointer

    moved: dict[str, str] = {}
    for asset in assets:
        try:
            now = read_pointer(container, asset).assetId
        except Exception as exc:  # the verdicts stand on the jobs; this is context for a reader
            log.info("could not read pointer %s after the run: %s", asset, exc)
            continue
        if now.rstrip("/").lower() != expected[asset].rstrip("/").lower():
            moved[asset] = now
            log.warning("pointer %s moved to %s meanwhile (this flow registered %s)", asset, now, expected[asset])
    return moved


def _with_moved_note(verdict: JobVerdict, moved: Mapping[str, str]) -> JobVerdict:
    from dataclasses import replace

    from cicd_tools.aml.verify import code_version_of

    expected = code_version_of(verdict.expected_code_id)
    if expected is None or expected[0] not in moved:
        return verdict
    note = f"the pointer moved to {moved[expected[0]]} meanwhile"
    return replace(verdict, note=f"{verdict.note}; {note}" if verdict.note else note)


@dataclass(frozen=True)
class LintJobRequest:
    files: tuple[Path, ...]
    fail_on: str = "warning"  # the lowest severity that fails: "error" or "warning"


@dataclass(frozen=True)
class LintJobResult:
    findings: tuple[JobFinding, ...]
    failing: tuple[JobFinding, ...]  # the findings at or above ``fail_on``

    @property
    def passed(self) -> bool:
        return not self.failing


def lint_jobs(request: LintJobRequest) -> LintJobResult:
    """Lint command-job YAML and job-submitting ADF activities (offline). Raises: UsageError (an unreadable file)."""
    from cicd_tools.aml.lint_job import lint_files

    findings = tuple(lint_files(request.files))
    severities = ("error",) if request.fail_on == "error" else ("error", "warning")
    return LintJobResult(findings, tuple(f for f in findings if f.severity in severities))
