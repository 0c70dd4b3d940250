"""Issue 20 case 5 (lines that mislead): no Python ``None`` in text, and storage diagnose agrees with preflight
that shared key disabled is the secure setting (Azure: ``allowSharedKeyAccess`` null means true)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cicd_tools.preflight import storage as preflight_storage
from cicd_tools.preflight.context import Context, Targets
from cicd_tools.report.markdown import render_markdown
from cicd_tools.report.model import AdfRunEvidence, EvidenceReport
from cicd_tools.storage.smoke import diagnose

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TARGETS = Targets(subscription_id="s", resource_group="rg", storage_account="pointersa", container="ml-globals",
                  workspace="mlw", compute="k8s", factory="adf", adf_dir=None)


class Reader:
    """An ArmReader answering every read with one storage account (and the workspace naming it)."""

    def __init__(self, shared_key: bool | None) -> None:
        self.account = {"id": TARGETS.account_id, "properties": {
            "allowSharedKeyAccess": shared_key, "publicNetworkAccess": "Enabled",
            "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": []}}}

    def get(self, path: str, api_version: str, **query: str) -> dict[str, Any]:
        if "/workspaces/" in path:
            return {"properties": {"storageAccount": TARGETS.account_id}}
        return self.account

    def list(self, path: str, api_version: str, **query: str) -> list[dict[str, Any]]:
        return []


def _preflight(shared_key: bool | None) -> dict[str, Any]:
    link = preflight_storage.check(Context(Reader(shared_key), TARGETS, NOW))
    return {c.id: c for c in link.checks}


def test_diagnose_and_preflight_agree_that_shared_key_disabled_is_good_and_allowed_is_the_warning() -> None:
    for shared_key, warned in ((False, False), (None, True), (True, True)):
        account = Reader(shared_key).account
        findings = {f.code: f.level for f in diagnose(account, NOW).findings}
        preflight = _preflight(shared_key)["pointer-account"]
        assert (preflight.status == "warn") is warned, (shared_key, preflight)
        assert ("warning" in findings.values()) is warned, (shared_key, findings)
        if shared_key is False:
            assert findings["SharedKeyDisabled"] == "info"
        else:
            assert findings["SharedKeyAllowed"] == "warning"


def test_preflight_evidence_never_prints_none_for_an_unset_setting() -> None:
    checks = _preflight(None)
    for check in checks.values():
        assert "None" not in check.evidence, check.evidence
    assert "allowSharedKeyAccess=not set (true)" in checks["pointer-account"].evidence


def test_the_report_of_a_run_that_was_never_created_prints_no_none() -> None:
    report = EvidenceReport(tool="cicd-tools", startedAtUtc="2026-06-01T12:00:00Z", status="failed", exitCode=2)
    report.adfRuns.append(AdfRunEvidence(pipeline="pl_train_and_validate", factory="adf"))
    text = render_markdown(report)
    assert "None" not in text and "Run id `None`" not in text
    assert "No run id" in text
