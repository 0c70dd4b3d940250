"""Issue 20 case 1: a mistyped account name fails at its first lookup (it took 89 s of retries before).

``.invalid`` never resolves (RFC 6761), so this is the real azure-storage-blob pipeline failing name resolution.
"""

from __future__ import annotations

import json
import logging

import pytest

from cicd_tools.cli.main import main

TYPO = ("DefaultEndpointsProtocol=https;AccountName=mlopssandbox;AccountKey=c2VjcmV0c2VjcmV0c2VjcmV0;"
        "BlobEndpoint=https://mlopssandbox.blob.core.invalid")


def test_an_account_name_that_does_not_resolve_fails_after_one_lookup(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CICD_BLOB_ENDPOINT", "CICD_SANDBOX_STATE_DIR", "CICD_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)  # the SDK's retry backoff sleeps through the transport
    caplog.set_level(logging.INFO)
    code = main(["-o", "json", "storage", "smoke", "--auth-mode", "key", "--connection-string", TYPO])
    doc = json.loads(capsys.readouterr().out)
    assert code == 3
    first = doc["steps"][0] if "steps" in doc else doc
    assert "DnsResolutionFailed" in json.dumps(first)
    assert "--account" in json.dumps(doc)  # the fix names the setting that is probably wrong
    assert [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()] == []
    assert slept == []
