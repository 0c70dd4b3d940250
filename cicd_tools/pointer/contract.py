"""The ``latest.json`` pointer contract on blob storage: CAS writes, history, read-back, rollback.

The document, its schema and the one validator are in ``pointer/model.py``. Every publication also lands as an
immutable history blob, so a rollback is a pointer write of an old record. Functions take a ``ContainerClient``;
they never build one. ``CodeAssetPointer`` and ``ASSET_NAME_RE`` stay importable from here (this module was the
model's documented home, and library callers import them from it).
"""

from __future__ import annotations

import difflib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cicd_tools.pointer.model import ASSET_NAME_RE as ASSET_NAME_RE
from cicd_tools.pointer.model import (
    MAX_POINTER_BYTES,
    history_blob_name,
    history_prefix,
    parse_pointer,
    pointer_blob_name,
    serialize_pointer,
    superseded_by,
    utc_now_iso,
)
from cicd_tools.pointer.model import CodeAssetPointer as CodeAssetPointer
from cicd_tools.support.errors import AzureError, ConflictError, ContractViolation, UsageError
from cicd_tools.support.progress import retry_line

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    """What a publication did: the pointer written, its ETag, the history record, the attempts used."""

    pointer: CodeAssetPointer
    etag: str
    history_blob: str
    attempts: int
    previous_version: str | None
    verified: bool
    replaced: str | None = None  # --force-replace: what was wrong with the blob it overwrote


def _content_settings() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json", cache_control="no-cache")


def read_pointer(container: ContainerClient, asset: str, *, workspace_id: str | None = None) -> CodeAssetPointer:
    """Read and validate ``latest.json`` (``workspace_id``: the assetId must be in it).

    Raises: ContractViolation (missing/malformed/foreign), AzureError.
    """
    current = _read_current(container, asset, workspace_id=workspace_id)
    if current is None:
        raise ContractViolation(
            f"no pointer for asset {asset!r} at {container.container_name}/{pointer_blob_name(asset)}",
            hint=missing_pointer_hint(container, asset), code="PointerNotFound",
        )
    return current[0]


def missing_pointer_hint(container: ContainerClient, asset: str) -> str:
    """What to do about a pointer that is not there: the close published name for a typo (never "publish the
    misspelt one"), else how to publish it."""
    existing = published_assets(container)
    listed = f"{', '.join(existing[:10])}{', …' if len(existing) > 10 else ''}"
    close = difflib.get_close_matches(asset, existing, n=1, cutoff=0.75)
    if close:
        return f"Did you mean {close[0]!r}? (published pointers: {listed})"
    return ((f"Published pointers: {listed}. " if existing else "")
            + "Publish one with `cicd-tools code register --pointer` or `cicd-tools pointer write` (or check"
              " --container).")


def published_assets(container: ContainerClient, *, limit: int = 1000) -> list[str]:
    """The assets with a folder under ``code-assets/`` (sorted; [] when the listing fails). One listing level."""
    names: list[str] = []
    try:
        for i, item in enumerate(container.walk_blobs(name_starts_with="code-assets/", delimiter="/")):
            if i >= limit:
                break
            parts = str(item.name).strip("/").split("/")
            if len(parts) == 2:
                names.append(parts[1])
    except Exception as exc:  # a hint is not worth a failure: the read's own error stands
        log.info("could not list the published pointers: %s", type(exc).__name__)
        return []
    return sorted(set(names))[:limit]


def _download_capped(container: ContainerClient, name: str) -> tuple[bytes, str]:
    """At most ``MAX_POINTER_BYTES + 1`` bytes of blob ``name`` and its ETag (a bigger blob is never read whole).

    Raises: ResourceNotFoundError (blob or container missing); HttpResponseError (anything else).
    """
    from azure.core.exceptions import HttpResponseError

    blob = container.get_blob_client(name)
    try:
        downloader = blob.download_blob(offset=0, length=MAX_POINTER_BYTES + 1)
    except HttpResponseError as exc:
        if exc.status_code != 416:  # 416 InvalidRange: a range read of an empty blob
            raise
        return b"", str(blob.get_blob_properties().etag)
    return downloader.readall(), str(downloader.properties.etag)


def _read_current(
    container: ContainerClient, asset: str, *, workspace_id: str | None = None
) -> tuple[CodeAssetPointer, str] | None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    name = pointer_blob_name(asset)
    try:
        raw, etag = _download_capped(container, name)
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            raise AzureError(
                f"container {container.container_name!r} does not exist", code="ContainerNotFound",
                hint="Create it (az storage container create) or pass --container.",
            ) from None
        return None
    except HttpResponseError as exc:
        from cicd_tools.support.azerrors import classify_azure_error

        raise classify_azure_error(exc, what=f"reading the pointer {container.container_name}/{name}") from None
    return parse_pointer(raw, source=f"{container.container_name}/{name}", asset=asset,
                         workspace_id=workspace_id), etag


def publish_pointer(
    container: ContainerClient,
    pointer: CodeAssetPointer,
    *,
    version_exists: Callable[[str, str], bool] | None = None,
    allow_older: bool = False,
    force_replace: bool = False,
    max_attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    now: Callable[[], str] = utc_now_iso,
) -> PublishResult:
    """Compare-and-swap ``latest.json`` to ``pointer``, record history, read it back.

    A registration older than the current pointer's (by ``registeredAtUtc``, when both are known) is refused
    unless ``allow_older`` (rollback): a slow concurrent writer never moves the pointer backwards.
    A current blob that violates the contract (oversized, not JSON, BOM, wrong shape) is refused unless
    ``force_replace``: then it is overwritten at its ETag, unread beyond the 64 KiB cap; history blobs stay.

    Raises: ContractViolation when ``version_exists`` says the workspace lacks the version;
    ConflictError when concurrent writers keep winning beyond ``max_attempts`` or a newer
    publication exists; AzureError on storage failures.
    """
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError

    if version_exists is not None and not version_exists(pointer.assetName, pointer.version):
        raise ContractViolation(
            f"refusing to publish {pointer.assetName}:{pointer.version}: the workspace does not hold that version",
            hint="Publish only the version `code register` returned (result.version).",
            code="VersionNotInWorkspace",
        )
    rng = rng or random.Random()
    blob = container.get_blob_client(pointer_blob_name(pointer.assetName))
    previous: str | None = None
    for attempt in range(1, max_attempts + 1):
        published_at = now()
        pointer = pointer.model_copy(update={"publishedAtUtc": published_at})
        body = serialize_pointer(pointer)
        broken: tuple[ContractViolation, str] | None = None
        try:
            current = _read_current(container, pointer.assetName)
        except ContractViolation as bad:
            if not force_replace or bad.code == "PointerNotFound":
                if "--force-replace" not in bad.hint:
                    bad.hint = ((bad.hint + " ") if bad.hint else "") + (
                        "`cicd-tools pointer write --force-replace` replaces it (history records are kept).")
                raise
            current, broken = None, (bad, _etag_of(container, pointer_blob_name(pointer.assetName)))
        replaced: str | None = None
        try:
            if broken is not None:
                previous, replaced = None, f"{broken[0].code}: {broken[0].message}"
                log.warning("replacing %s (--force-replace): %s", pointer_blob_name(pointer.assetName), replaced)
                result = blob.upload_blob(
                    body, overwrite=True, etag=broken[1], match_condition=MatchConditions.IfNotModified,
                    content_settings=_content_settings(),
                )
            elif current is None:
                previous = None
                result = blob.upload_blob(body, overwrite=False, content_settings=_content_settings())
            else:
                cur, etag = current
                previous = cur.version
                if not allow_older and superseded_by(cur, pointer):
                    raise ConflictError(
                        f"the pointer already holds a newer registration of {pointer.assetName} "
                        f"({cur.version}, registered {cur.registeredAtUtc}) than this one "
                        f"({pointer.version}, registered {pointer.registeredAtUtc})",
                        hint="Nothing to do if the newer build is the one to ship; otherwise use "
                        "`cicd-tools pointer rollback`.",
                        code="PointerSuperseded",
                    )
                result = blob.upload_blob(
                    body, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                    content_settings=_content_settings(),
                )
        except (ResourceExistsError, ResourceModifiedError):
            # Someone wrote between our read and our write (409 create-only, 412 If-Match): re-read.
            delay = min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + rng.random())
            log.info("%s", retry_line(f"pointer {pointer.assetName}", "another writer changed it under us", attempt,
                                      delay, max_attempts))
            sleep(delay)
            continue
        except HttpResponseError as exc:
            from cicd_tools.support.azerrors import classify_azure_error

            raise classify_azure_error(exc, what="writing the pointer") from None
        etag_written = str(result["etag"])
        history = _write_history(container, pointer, published_at)
        verified = _verify(container, pointer, etag_written)
        return PublishResult(pointer, etag_written, history, attempt, previous, verified, replaced)
    raise ConflictError(
        f"gave up publishing {pointer.assetName}:{pointer.version} after {max_attempts} attempts: "
        "concurrent writers kept changing the pointer",
        code="PointerConflict",
    )


def _etag_of(container: ContainerClient, name: str) -> str:
    from azure.core.exceptions import HttpResponseError

    try:
        return str(container.get_blob_client(name).get_blob_properties().etag)
    except HttpResponseError as exc:
        from cicd_tools.support.azerrors import classify_azure_error

        raise classify_azure_error(exc, what=f"reading the properties of {name}") from None


def _write_history(container: ContainerClient, pointer: CodeAssetPointer, published_at: str) -> str:
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    name = history_blob_name(pointer.assetName, published_at, pointer.version)
    body = serialize_pointer(pointer)
    for attempt in range(3):
        try:
            container.upload_blob(name, body, overwrite=False, content_settings=_content_settings())
            return name
        except ResourceExistsError:
            existing = container.download_blob(name).readall()
            if existing == body:
                return name
            raise ContractViolation(
                f"history record {name} already exists with other content; refusing to overwrite it",
                code="HistoryCollision",
            ) from None
        except HttpResponseError as exc:
            if attempt == 2:
                raise AzureError(
                    f"the pointer was published but its history record {name} could not be written: {exc.message}",
                    hint="Re-run `pointer write` with the same document; the pointer itself is correct.",
                    code="HistoryWriteFailed",
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _verify(container: ContainerClient, pointer: CodeAssetPointer, etag: str) -> bool:
    """Read back what we wrote (at our ETag). False when a newer write already replaced it."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError

    blob = container.get_blob_client(pointer_blob_name(pointer.assetName))
    try:
        raw = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified).readall()
    except ResourceModifiedError:
        log.info("pointer %s was replaced by a newer publication after ours", pointer.assetName)
        return False
    if parse_pointer(raw, source=blob.blob_name) != pointer:
        raise ContractViolation(
            f"read-back of {blob.blob_name} differs from what was written", code="PointerReadBackMismatch"
        )
    return True


def list_history(container: ContainerClient, asset: str) -> list[tuple[str, CodeAssetPointer]]:
    """Every history record of ``asset``, newest publication first."""
    records: list[tuple[str, CodeAssetPointer]] = []
    for item in container.list_blobs(name_starts_with=history_prefix(asset)):
        raw, _ = _download_capped(container, item.name)
        records.append((item.name, parse_pointer(raw, source=item.name)))
    records.sort(key=lambda r: r[0], reverse=True)
    return records


def rollback_pointer(
    container: ContainerClient,
    asset: str,
    to_version: str,
    *,
    version_exists: Callable[[str, str], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishResult:
    """Republish the newest history record of ``to_version``. Raises: UsageError when none exists."""
    for name, record in list_history(container, asset):
        if record.version == to_version:
            restored = record.model_copy(update={"rollbackOf": name})
            return publish_pointer(
                container, restored, version_exists=version_exists, allow_older=True, sleep=sleep
            )
    raise UsageError(
        f"no history record of {asset} version {to_version!r}",
        hint=f"`cicd-tools pointer history --asset {asset}` lists the versions you can roll back to.",
    )
