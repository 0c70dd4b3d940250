"""From the operations' typed results to the evidence report's sections (one function per result type).

Free-form values an operation passes through from Azure (pipeline parameters, child runs, activity errors) are
made JSON-plain here, so recording evidence can never be the step that fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from cicd_tools.adf.operations import AdfRunResult
    from cicd_tools.aml.mirroring import MirrorResult
    from cicd_tools.aml.operations import VerifyResult
    from cicd_tools.codeassets.register import AssetOutcome
    from cicd_tools.pointer.contract import PublishResult
    from cicd_tools.storage.firewall import RollbackReport
    from cicd_tools.storage.operations import FirewallClosed, FirewallOpened
    from cicd_tools.storage.smoke import SmokeResult


def plain(value: Any) -> Any:
    """JSON-plain: datetimes and other objects become strings."""
    return json.loads(json.dumps(value, default=str))


def _plain_dict(value: Any) -> dict[str, Any] | None:
    return plain(dict(value)) if isinstance(value, dict) and value else None


def record_open(ev: FirewallEvidence, opened: FirewallOpened) -> None:
    result = opened.result
    ev.accountId, ev.ip, ev.expiresAt = result.account_id, opened.ip, result.expires_at
    ev.skipped, ev.ruleAdded, ev.preexisting = result.skipped, result.rule_added, result.preexisting
    ev.opened = not result.skipped
    ev.reachableAfterSeconds = result.reachable_after


def record_rollback(ev: FirewallEvidence, rollback: RollbackReport) -> None:
    """What a failed or cancelled open removed again: the facts the later close cannot see any more."""
    ev.accountId, ev.ip = ev.accountId or rollback.account_id, rollback.ip
    ev.ruleAdded = rollback.rule_added
    ev.ruleRemoved = rollback.rule_removed or bool(ev.ruleRemoved)
    ev.rollbackNote = rollback.note


def record_close(ev: FirewallEvidence, closed: FirewallClosed | None, *, ok: bool) -> None:
    """The close's results; a rule the rollback already removed stays removed in the evidence."""
    ev.closed = ok
    results = closed.results if closed is not None else ()
    ev.ruleRemoved = any(r.rule_removed for r in results) or bool(ev.ruleRemoved)
    notes = [r.nothing_to_do for r in results if r.nothing_to_do]
    if closed is not None and closed.nothing_to_do:
        notes.append(closed.nothing_to_do)
    if ev.rollbackNote and notes:
        notes.insert(0, "the rollback of the open already removed what it had added")
    ev.closeNote = "; ".join(notes) or None
    if ev.ip is None:
        ev.ip = next((r.ip for r in results if r.ip), None)


def smoke_evidence(result: SmokeResult) -> SmokeEvidence:
    failure = result.failure
    return SmokeEvidence(
        usable=result.usable, accountUrl=result.account_url,
        steps=[SmokeStep(step=s.step, ok=s.ok, skipped=s.skipped, latencyMs=s.latency_ms, code=s.code,
                         message=s.message) for s in result.steps],
        failureCode=failure.code if failure else None, fix=failure.fix if failure else None,
    )


def record_registration(ev: AssetEvidence, outcome: AssetOutcome) -> None:
    """One asset's registration outcome (called the moment Azure ML answered it, and again at the end)."""
    result = outcome.result
    if result is not None:
        usable = not result.name_mismatch  # another asset's version is evidence, never this asset's version
        ev.requestedVersion, ev.version = result.requested_version, result.version if usable else None
        ev.returnedName, ev.assetId = result.returned_name, result.asset_id if usable else None
        ev.contentHash, ev.dedup = result.content_hash, result.dedup
    if outcome.error is not None:
        ev.error = ErrorInfo.from_error(outcome.error)


def record_pointer(ev: PointerEvidence, published: PublishResult) -> None:
    p = published.pointer
    ev.before, ev.after, ev.assetId = published.previous_version, p.version, p.assetId
    ev.historyBlob, ev.verified = published.history_blob, published.verified
    ev.record = p.model_dump(mode="json")


def record_adf_run(ev: AdfRunEvidence, run: AdfRunResult) -> None:
    ev.runId, ev.status, ev.message = run.run_id, run.status, run.message
    ev.runStart, ev.runEnd, ev.durationInMs = run.run_start, run.run_end, run.duration_ms
    ev.factory = run.factory or ev.factory
    ev.parameters = _plain_dict(run.parameters) or ev.parameters
    ev.activities = [
        ActivityEvidence(activityName=a.activity_name, activityType=a.activity_type, status=a.status,
                         pipelineRunId=a.pipeline_run_id, activityRunId=a.activity_run_id,
                         error=_plain_dict(a.error))
        for a in run.activities
    ]
    ev.childRuns = [plain(c) for c in run.child_runs]


def record_verify(ev: VerifyEvidence, result: VerifyResult) -> None:
    ev.ok, ev.expectedCodeId = result.ok, result.expected_code_id
    ev.pointerMoved = dict(result.pointer_moved)
    ev.jobs = [
        JobEvidence(name=v.name, status=v.status, codeId=v.code_id, expectedCodeId=v.expected_code_id,
                    codeIdMatches=v.code_id_matches, codeHash=v.code_hash, expectedHash=v.expected_hash,
                    hashMatches=v.hash_matches, ok=v.ok, note=v.note)
        for v in result.verdicts
    ]


def record_mirror(ev: MirrorEvidence, result: MirrorResult) -> None:
    ev.ok, ev.reused = result.ok, result.reused
    ev.modelName = result.model_name or ev.modelName
    ev.modelVersion, ev.modelAssetId = result.model_version, result.model_asset_id
    ev.trainingJob, ev.codeId, ev.contentHash = result.training_job, result.code_id, result.content_hash
    ev.warning = result.warning
    if result.error is not None:
        ev.error = ErrorInfo(type="ModelMirrorFailed", code=result.error.code, message=result.error.message,
                             exitCode=result.error.exit_code)


def registered_ids(assets: Sequence[AssetEvidence]) -> dict[str, str]:
    """asset name -> the assetId Azure ML returned to this flow (only registrations that stand)."""
    return {a.name: a.assetId for a in assets if a.assetId and a.version and a.error is None}
