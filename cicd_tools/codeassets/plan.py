"""``code plan``: what registration will do, before anything is uploaded (no azure.ai.ml import).

Two reads tell it all: the hash lookup the SDK itself makes (a hit means the SDK returns that
existing asset and uploads nothing; the lookup matches regardless of name, so the hit can be another
asset's, and then registration fails with AssetNameMismatch) and a GET of the requested version
(present with other content means the final PUT will fail: "Asset paths cannot be updated").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.codeassets.hashing import HASH_VERSION, collect_code_files, hash_code_files
from cicd_tools.codeassets.staging import markers_for, staged_copy
from cicd_tools.codeassets.workspace import CodeVersionInfo, WorkspaceCodes


@dataclass(frozen=True)
class RegistrationPlan:
    """The predicted outcome of registering one asset."""

    name: str
    path: str
    content_hash: str
    file_count: int
    total_bytes: int
    requested_version: str | None
    unique: bool
    existing: CodeVersionInfo | None  # the version the hash lookup found (the SDK returns it, any name)
    requested_holder: CodeVersionInfo | None  # what the workspace already holds as the requested version
    name_marker: bool = False

    @property
    def dedup(self) -> bool:
        return self.existing is not None

    @property
    def name_mismatch(self) -> bool:
        """The SDK will return another asset's name: registration fails (AssetNameMismatch, exit 5)."""
        return self.existing is not None and self.existing.name != self.name

    @property
    def expected_name(self) -> str:
        """The asset name the SDK will return."""
        return self.existing.name if self.existing is not None else self.name

    @property
    def will_upload(self) -> bool:
        return self.existing is None

    @property
    def expected_version(self) -> str | None:
        """The version registration will return."""
        return self.existing.version if self.existing is not None else self.requested_version

    @property
    def conflict(self) -> bool:
        """The requested version exists with other content and no hash hit short-circuits: the PUT fails."""
        if self.existing is not None or self.requested_holder is None:
            return False
        return self.requested_holder.hash_sha256 != self.content_hash

    @property
    def needs_version(self) -> bool:
        """An upload is due but no version was requested (Azure ML has no auto-increment for code)."""
        return self.will_upload and self.requested_version is None

    def warnings(self) -> list[str]:
        found: list[str] = []
        if self.existing is not None and self.name_mismatch:
            found.append(
                f"this content is already registered as {self.existing.name}:{self.existing.version}; Azure ML's"
                f" hash lookup matches regardless of name, so registering it as {self.name} returns "
                f"{self.existing.name}:{self.existing.version} and `code register` fails (exit 5): "
                "add --name-marker (or --unique)"
            )
        elif self.existing is not None and self.requested_version and self.existing.version != self.requested_version:
            found.append(
                f"this content is already {self.name}:{self.existing.version}; requesting "
                f"{self.requested_version} will return {self.existing.version} (use --unique for a new version)"
            )
        if self.conflict and self.requested_holder is not None:
            held = self.requested_holder.hash_sha256
            found.append(
                f"{self.name}:{self.requested_version} already exists with other content "
                f"(hash {held[:12] + '…' if held else 'unknown'}): registration will fail"
                " with 'Asset paths cannot be updated'; request another version"
            )
        if self.needs_version:
            found.append("the content is new and no version was requested: registration needs --version")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "contentHash": self.content_hash,
            "hashVersion": HASH_VERSION,
            "fileCount": self.file_count,
            "totalBytes": self.total_bytes,
            "requestedVersion": self.requested_version,
            "unique": self.unique,
            "nameMarker": self.name_marker,
            "existingName": self.existing.name if self.existing else None,
            "existingVersion": self.existing.version if self.existing else None,
            "existingAssetId": self.existing.id if self.existing else None,
            "expectedName": self.expected_name,
            "expectedVersion": self.expected_version,
            "nameMismatch": self.name_mismatch,
            "dedup": self.dedup,
            "willUpload": self.will_upload,
            "conflict": self.conflict,
            "warnings": self.warnings(),
        }


def plan_registration(
    codes: WorkspaceCodes,
    name: str,
    path: Path,
    requested_version: str | None,
    *,
    unique: bool = False,
    repo_root: Path | None = None,
    name_marker: bool = False,
) -> RegistrationPlan:
    """Hash ``path`` as registration would (staging it with ``unique`` / ``name_marker``) and ask the workspace.

    Raises: CodePathError for a path registration would refuse; AzureError when the workspace cannot be read.
    """
    files = collect_code_files(path, repo_root=repo_root)
    # --unique without a version cannot be predicted (the marker holds the version): hash without it.
    markers = markers_for(asset_name=name if name_marker else None,
                          requested_version=requested_version if unique and requested_version else None)
    if markers:
        with staged_copy(files, markers) as staged:
            digest = staged.content_hash
    else:
        digest = hash_code_files(files)
    hits = codes.find_by_hash(name, digest.sha256)
    holder = codes.get_version(name, requested_version) if requested_version and not hits else None
    return RegistrationPlan(
        name=name,
        path=str(path),
        content_hash=digest.sha256,
        file_count=digest.file_count,
        total_bytes=digest.total_bytes,
        requested_version=requested_version,
        unique=unique,
        existing=hits[0] if hits else None,
        requested_holder=holder,
        name_marker=name_marker,
    )
