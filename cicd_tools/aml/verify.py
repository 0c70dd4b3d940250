"""Prove that Azure ML jobs ran the published code: codeId, status, and the content hash they ran.

Per job: its ``codeId`` must equal the expected code version id (``--expect-code-id``, or the pointer's
``assetId`` as published when the job was created: the newest history record published at or before
the job's ``systemData.createdAt``), its status must be Completed, and when one of its outputs carries
``code.json`` the ``codeHash`` in it must equal the content hash the workspace registered for that
code version. The result is the JSON evidence ``aml verify`` prints (a fixed contract the ``flow``
command reads).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cicd_tools.pointer.contract import CodeAssetPointer

_CODE_ID_RE = re.compile(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/?]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class JobVerdict:
    """One job's evidence. ``as_json`` is the contract's per-job object."""

    name: str
    status: str | None
    code_id: str | None
    expected_code_id: str | None
    code_hash: str | None
    expected_hash: str | None
    created_at: str | None = None
    note: str | None = None

    @property
    def code_id_matches(self) -> bool:
        return bool(self.code_id and self.expected_code_id
                    and self.code_id.rstrip("/").lower() == self.expected_code_id.rstrip("/").lower())

    @property
    def hash_matches(self) -> bool | None:
        if self.code_hash is None or self.expected_hash is None:
            return None
        return self.code_hash.lower() == self.expected_hash.lower()

    @property
    def ok(self) -> bool:
        return self.code_id_matches and self.status == "Completed" and self.hash_matches is not False

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "codeId": self.code_id,
                "expectedCodeId": self.expected_code_id, "codeIdMatches": self.code_id_matches,
                "codeHash": self.code_hash, "expectedHash": self.expected_hash, "hashMatches": self.hash_matches,
                "ok": self.ok, "createdAt": self.created_at, "note": self.note}


def published_at(history: Sequence[CodeAssetPointer], created_at: str | None) -> CodeAssetPointer | None:
    """The pointer record in effect at ``created_at``: the newest published at or before it.

    Timestamps are ISO 8601 UTC strings of one format (``…Z``), so they compare as text; a job without a
    creation time is judged against the newest record.
    """
    records = sorted((p for p in history if p.publishedAtUtc), key=lambda p: str(p.publishedAtUtc))
    if created_at is None:
        return records[-1] if records else None
    stamp = _normalise(created_at)
    earlier = [p for p in records if _normalise(str(p.publishedAtUtc)) <= stamp]
    return earlier[-1] if earlier else None


def _normalise(stamp: str) -> str:
    """``2026-01-01T10:00:00.123Z`` / ``+00:00`` / 7 fraction digits → one comparable form."""
    text = stamp.strip().replace("+00:00", "Z")
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")
    return f"{head.rstrip('Z')}.{(fraction + '000000')[:6]}Z"


def code_version_of(code_id: str | None) -> tuple[str, str] | None:
    match = _CODE_ID_RE.search(code_id or "")
    return (match["name"], match["version"]) if match else None


def judge_job(
    job: dict[str, Any],
    *,
    expected_code_id: str | None,
    code_hash: str | None,
    registered_hash: Callable[[str, str], str | None],
    note: str | None = None,
) -> JobVerdict:
    """The verdict on one job resource (``GET {WS}/jobs/{name}``)."""
    props = job.get("properties") or {}
    code_id = props.get("codeId")
    version = code_version_of(code_id)
    expected_hash = registered_hash(*version) if version else None
    created = (job.get("systemData") or {}).get("createdAt")
    return JobVerdict(name=str(job.get("name")), status=props.get("status"), code_id=code_id,
                      expected_code_id=expected_code_id, code_hash=code_hash, expected_hash=expected_hash,
                      created_at=created, note=note)


def evidence(verdicts: Sequence[JobVerdict], expected_code_id: str | None) -> dict[str, Any]:
    """The contract document: ``{"ok", "expectedCodeId", "jobs": [...]}``."""
    return {"ok": bool(verdicts) and all(v.ok for v in verdicts), "expectedCodeId": expected_code_id,
            "jobs": [v.as_json() for v in verdicts]}
