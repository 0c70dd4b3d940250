"""The evidence report of ``cicd-tools flow``: what every step produced, as versioned JSON and as Markdown.

The pydantic model is the single source: ``cicd_tools/schemas/evidence-report.schema.json`` is generated
from it (``cicd-tools report schema --write``) and a test fails when the checked-in copy drifts. The file is
rewritten atomically after every step, so a later failure (or a killed agent) never loses earlier evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cicd_tools.support.errors import CicdError, ContractViolation

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "evidence-report.schema.json"

StepStatus = Literal["running", "ok", "failed", "interrupted", "skipped", "not-available", "not-run"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(_Model):
    """A step's error as the CLI would report it."""

    type: str
    code: str | None = None
    message: str
    hint: str | None = None
    exitCode: int

    @classmethod
    def from_error(cls, err: BaseException) -> ErrorInfo:
        from cicd_tools.support.redact import redact

        if isinstance(err, CicdError) or hasattr(err, "exit_code"):  # Interrupted may become a BaseException
            message, hint = str(getattr(err, "message", err)), getattr(err, "hint", None)
            return cls(type=type(err).__name__, code=getattr(err, "code", None), message=redact(message),
                       hint=redact(str(hint)) if hint else None, exitCode=int(getattr(err, "exit_code", 70)))
        if isinstance(err, KeyboardInterrupt):
            return cls(type="Interrupted", message="interrupted by the user", exitCode=130)
        return cls(type=type(err).__name__, message=redact(str(err)), exitCode=70)


class StepRecord(_Model):
    name: str
    status: StepStatus
    command: list[str] = Field(default_factory=list, description="the cicd-tools invocations this step ran")
    startedAtUtc: str | None = None
    durationSeconds: float | None = None
    note: str | None = None
    error: ErrorInfo | None = None


class FirewallEvidence(_Model):
    """The temporary IP rule's life."""

    accountId: str | None = None
    ip: str | None = None
    leaseId: str | None = None
    expiresAt: str | None = None
    opened: bool = False
    skipped: str | None = None
    ruleAdded: bool | None = None
    preexisting: bool | None = None
    reachableAfterSeconds: float | None = None
    closed: bool = False
    ruleRemoved: bool | None = None
    closeNote: str | None = None
    rollbackNote: str | None = Field(None, description="what a failed or cancelled open removed again")


class SmokeStep(_Model):
    step: str
    ok: bool
    skipped: bool = False
    latencyMs: float | None = None
    code: str | None = None
    message: str | None = None


class SmokeEvidence(_Model):
    usable: bool
    accountUrl: str | None = None
    steps: list[SmokeStep] = Field(default_factory=list)
    failureCode: str | None = None
    fix: str | None = None


class PointerEvidence(_Model):
    """The pointer before and after this run's publication, and the history entry it left."""

    before: str | None = Field(None, description="version the pointer held before (null: unset)")
    after: str | None = None
    assetId: str | None = None
    historyBlob: str | None = None
    verified: bool | None = None
    record: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class AssetEvidence(_Model):
    name: str = Field(description="the asset name configured")
    path: str | None = None
    requestedVersion: str | None = None
    version: str | None = Field(None, description="the version Azure ML returned: the only one used downstream")
    returnedName: str | None = None
    assetId: str | None = None
    contentHash: str | None = None
    dedup: bool | None = None
    error: ErrorInfo | None = None
    pointer: PointerEvidence | None = None


class ActivityEvidence(_Model):
    activityName: str
    activityType: str | None = None
    status: str | None = None
    pipelineRunId: str | None = None
    activityRunId: str | None = None
    error: dict[str, Any] | None = None


class AdfRunEvidence(_Model):
    factory: str | None = None
    pipeline: str
    runId: str | None = None
    status: str | None = None
    message: str | None = None
    runStart: str | None = None
    runEnd: str | None = None
    durationInMs: int | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    activities: list[ActivityEvidence] = Field(default_factory=list)
    childRuns: list[dict[str, Any]] = Field(default_factory=list)


class JobEvidence(_Model):
    name: str
    status: str | None = None
    codeId: str | None = None
    expectedCodeId: str | None = None
    codeIdMatches: bool | None = None
    codeHash: str | None = None
    expectedHash: str | None = None
    hashMatches: bool | None = None
    ok: bool | None = None
    note: str | None = None


class VerifyEvidence(_Model):
    adfRunId: str
    pointers: list[str]  # each job is held to this flow's registration of the asset its ADF run named
    ok: bool | None = None
    expectedCodeId: str | None = None
    jobs: list[JobEvidence] = Field(default_factory=list)
    pointerMoved: dict[str, str] = Field(
        default_factory=dict, description="asset -> the assetId its pointer named after the run, when another")


class MirrorEvidence(_Model):
    """The model mirror of one ADF run's training job (best effort: ``error`` is a warning, not a failure)."""

    adfRunId: str
    ok: bool | None = None
    modelName: str | None = None
    modelVersion: str | None = None
    modelAssetId: str | None = None
    reused: bool | None = None
    trainingJob: str | None = None
    codeId: str | None = None
    contentHash: str | None = None
    warning: str | None = None
    error: ErrorInfo | None = None


class EvidenceReport(_Model):
    """Everything one ``cicd-tools flow`` run did, for people (Markdown) and machines (this JSON)."""

    model_config = ConfigDict(extra="forbid", title="CicdToolsEvidenceReport")

    schemaVersion: Literal[1] = 1
    tool: str
    startedAtUtc: str
    finishedAtUtc: str | None = None
    status: Literal["running", "succeeded", "failed", "interrupted", "incomplete"] = "running"
    exitCode: int | None = None
    configFile: str | None = None
    provenance: dict[str, str | None] = Field(default_factory=dict)
    steps: list[StepRecord] = Field(default_factory=list)
    firewall: FirewallEvidence | None = None
    smoke: SmokeEvidence | None = None
    assets: list[AssetEvidence] = Field(default_factory=list)
    adfRuns: list[AdfRunEvidence] = Field(default_factory=list)
    verify: list[VerifyEvidence] = Field(default_factory=list)
    mirror: list[MirrorEvidence] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict, description="CI outputs set during the run")


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of the report, as checked in."""
    schema = EvidenceReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://cicd-tools.dev/schemas/evidence-report.schema.json"
    return schema


def write_report(path: Path, report: EvidenceReport) -> None:
    """Write the report atomically, only over a regular file (``support.outpath.write_atomic``).

    Raises: OutputRefused (a device, FIFO, folder, missing folder), OSError.
    """
    from cicd_tools.support.outpath import write_atomic

    write_atomic(path, report.model_dump_json(indent=2) + "\n", what="evidence report")


def read_report(path: Path) -> EvidenceReport:
    """Read and validate a report. Raises: UsageError (missing/unreadable), ContractViolation (malformed)."""
    from cicd_tools.support.bounded import display_name, loads_json_bounded, read_text_bounded
    from cicd_tools.support.errors import UsageError

    try:  # a FIFO, a device (/dev/zero) or a file over the size cap: InputRefused, at once
        raw = read_text_bounded(path, what="report")
    except OSError as exc:
        raise UsageError(f"cannot read the report {path}: {exc.strerror or exc}",
                         hint="Pass the file `cicd-tools flow --report` wrote.") from None
    except UnicodeDecodeError as exc:  # a binary file, or another encoding: not a report we wrote
        raise ContractViolation(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                                code="ReportMalformed",
                                hint="Pass the file `cicd-tools flow --report` wrote.") from None
    try:
        data = loads_json_bounded(raw, where=f"the report {display_name(path)}")
    except json.JSONDecodeError as exc:
        raise ContractViolation(f"{path} is not JSON: {exc}", code="ReportMalformed",
                                hint="Pass the file `cicd-tools flow --report` wrote.") from None
    if not isinstance(data, dict) or "schemaVersion" not in data:  # not a report at all: no version to blame
        what = "a JSON object without schemaVersion" if isinstance(data, dict) else (
            f"a JSON {type(data).__name__}, not an object")
        raise ContractViolation(
            f"{path} is not an evidence report: it is {what}", code="ReportMalformed",
            hint="Pass the file `cicd-tools flow --report` wrote (the flow's evidenceReport output names it).")
    if data.get("schemaVersion") != SCHEMA_VERSION:
        raise ContractViolation(
            f"{path} has schemaVersion {data.get('schemaVersion')!r}; this cicd-tools reads {SCHEMA_VERSION}",
            code="ReportSchemaVersion", hint="Use the cicd-tools version that wrote the report.")
    try:
        return EvidenceReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ContractViolation(f"{path} is not an evidence report: {where}: {first['msg']}", code="ReportMalformed",
                                hint="Pass the file `cicd-tools flow --report` wrote.") from None
