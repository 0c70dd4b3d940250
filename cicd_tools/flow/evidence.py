"""From a step's command result (``Outcome.data``) to the evidence report's typed sections.

The results come from other commands' handlers; whatever shape a field arrives in (a datetime for a string, a float
for an int), it is coerced here, so recording evidence can never be the step that fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cicd_tools.report.model import (
    ActivityEvidence,
    AdfRunEvidence,
    AssetEvidence,
    ErrorInfo,
    FirewallEvidence,
    JobEvidence,
    MirrorEvidence,
    PointerEvidence,
    SmokeEvidence,
    SmokeStep,
    VerifyEvidence,
)
from cicd_tools.support.errors import ExitCode


def as_dict(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, Mapping) else {}


def plain(value: Any) -> Any:
    """JSON-plain: datetimes and other objects become strings."""
    return json.loads(json.dumps(value, default=str))


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _b(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _f(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _i(value: Any) -> int | None:
    number = _f(value)
    return None if number is None else int(number)


def _obj(value: Any) -> dict[str, Any] | None:
    return plain(dict(value)) if isinstance(value, Mapping) and value else None


def record_open(ev: FirewallEvidence, data: Any, exit_code: int) -> None:
    d = as_dict(data)
    ev.accountId, ev.ip, ev.expiresAt = _s(d.get("accountId")), _s(d.get("ip")) or ev.ip, _s(d.get("expiresAt"))
    ev.skipped, ev.ruleAdded, ev.preexisting = _s(d.get("skipped")), _b(d.get("ruleAdded")), _b(d.get("preexisting"))
    ev.opened = not d.get("skipped") and exit_code == 0
    ev.reachableAfterSeconds = _f(d.get("reachableAfter"))


def record_close(ev: FirewallEvidence, data: Any, exit_code: int) -> None:
    d = as_dict(data)
    closed = [c for c in d.get("closed") or [] if isinstance(c, Mapping)]
    ev.closed = exit_code == 0
    ev.ruleRemoved = any(bool(c.get("ruleRemoved")) for c in closed)
    notes = [str(c["nothingToDo"]) for c in closed if c.get("nothingToDo")]
    if d.get("nothingToDo"):
        notes.append(str(d["nothingToDo"]))
    ev.closeNote = "; ".join(notes) or None


def smoke_evidence(data: Any) -> SmokeEvidence:
    d = as_dict(data)
    failure = as_dict(d.get("failure"))
    return SmokeEvidence(
        usable=bool(d.get("usable")), accountUrl=_s(d.get("accountUrl")),
        steps=[SmokeStep(step=str(s.get("step", "?")), ok=bool(s.get("ok")), skipped=bool(s.get("skipped")),
                         latencyMs=_f(s.get("latencyMs")), code=_s(s.get("code")), message=_s(s.get("message")))
               for s in d.get("steps") or [] if isinstance(s, Mapping)],
        failureCode=_s(failure.get("code")), fix=_s(failure.get("fix")),
    )


def record_registration(assets: list[AssetEvidence], data: Any) -> None:
    """``code register``'s documents (in the order of the assets) onto the assets' evidence."""
    docs = data if isinstance(data, list) else [data]
    for ev, doc in zip(assets, docs, strict=False):
        if not isinstance(doc, Mapping):
            continue
        ev.requestedVersion, ev.version = _s(doc.get("requestedVersion")), _s(doc.get("version"))
        ev.returnedName, ev.assetId = _s(doc.get("name")), _s(doc.get("assetId"))
        ev.contentHash, ev.dedup = _s(doc.get("contentHash")), _b(doc.get("dedup"))
        err = doc.get("error")
        if isinstance(err, Mapping):
            ev.error = ErrorInfo(type=str(err.get("error")), code=_s(err.get("code")), message=str(err.get("message")),
                                 hint=_s(err.get("hint")), exitCode=_i(err.get("exitCode")) or 3)


def record_pointer(ev: PointerEvidence, data: Any) -> None:
    d = as_dict(data)
    ev.before, ev.after = _s(d.get("previousVersion")), _s(d.get("version"))
    ev.assetId, ev.historyBlob = _s(d.get("assetId")), _s(d.get("historyBlob"))
    ev.verified, ev.record = _b(d.get("verified")), _obj(d.get("pointer"))


def _activity(a: Mapping[str, Any]) -> ActivityEvidence:
    return ActivityEvidence(
        activityName=str(a.get("activityName")), activityType=_s(a.get("activityType")), status=_s(a.get("status")),
        pipelineRunId=_s(a.get("pipelineRunId")), activityRunId=_s(a.get("activityRunId")),
        error=_obj(a.get("error")),
    )


def record_adf_run(ev: AdfRunEvidence, data: Any) -> None:
    d = as_dict(data)
    ev.runId, ev.status, ev.message = _s(d.get("runId")), _s(d.get("status")), _s(d.get("message"))
    ev.runStart, ev.runEnd, ev.durationInMs = _s(d.get("runStart")), _s(d.get("runEnd")), _i(d.get("durationInMs"))
    ev.factory = _s(d.get("factory")) or ev.factory
    ev.parameters = _obj(d.get("parameters")) or ev.parameters
    ev.activities = [_activity(a) for a in d.get("activities") or [] if isinstance(a, Mapping)]
    ev.childRuns = [plain(dict(c)) for c in d.get("childRuns") or [] if isinstance(c, Mapping)]


def record_verify(ev: VerifyEvidence, data: Any) -> None:
    d = as_dict(data)
    ev.ok, ev.expectedCodeId = _b(d.get("ok")), _s(d.get("expectedCodeId"))
    ev.jobs = [
        JobEvidence(
            name=str(j["name"]), status=_s(j.get("status")), codeId=_s(j.get("codeId")),
            expectedCodeId=_s(j.get("expectedCodeId")), codeIdMatches=_b(j.get("codeIdMatches")),
            codeHash=_s(j.get("codeHash")), expectedHash=_s(j.get("expectedHash")),
            hashMatches=_b(j.get("hashMatches")), ok=_b(j.get("ok")),
        )
        for j in d.get("jobs") or [] if isinstance(j, Mapping) and j.get("name")
    ]


def record_mirror(ev: MirrorEvidence, data: Any) -> None:
    d = as_dict(data)
    ev.ok, ev.reused = _b(d.get("ok")), _b(d.get("reused"))
    ev.modelName = _s(d.get("modelName")) or ev.modelName
    ev.modelVersion, ev.modelAssetId = _s(d.get("modelVersion")), _s(d.get("modelAssetId"))
    ev.trainingJob, ev.codeId, ev.contentHash = _s(d.get("trainingJob")), _s(d.get("codeId")), _s(d.get("contentHash"))
    ev.warning = _s(d.get("warning"))
    error = d.get("error")
    if isinstance(error, Mapping):
        ev.error = ErrorInfo(type="ModelMirrorFailed", code=_s(error.get("code")), message=str(error.get("message")),
                             exitCode=int(error.get("exitCode") or int(ExitCode.AZURE)))
