"""The ``latest.json`` pointer contract ADF reads: model, schema, CAS writes, history, rollback.

``{container}/code-assets/{assetName}/latest.json`` holds the version the SDK returned. Every
publication also lands as an immutable history blob
``code-assets/{assetName}/history/{publishedAtUtc}_{version}.json``, so a rollback is a pointer
write of an old record. Functions take a ``ContainerClient``; they never build one.

Readers never invent data: a pointer written by another tool without ``registeredAtUtc`` stays without
it (the supersede check needs both times), and a blob over ``MAX_POINTER_BYTES`` is refused unread.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

from cicd_tools.codeassets.names import AML_NAME_PATTERN, validate_asset_name
from cicd_tools.support.errors import AzureError, ConflictError, ContractViolation, UsageError
from cicd_tools.support.progress import retry_line

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ASSET_NAME_RE = AML_NAME_PATTERN  # Azure ML's own name rule (CodeVersions_CreateOrUpdate)
MAX_POINTER_BYTES = 64 * 1024  # a pointer is < 1 KiB; anything this big is not one (and is not read whole)


def _any_case(word: str) -> str:
    """``word`` as a case-insensitive pattern that JSON Schema (ECMA-262, no inline flags) reads too."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# One rule for the Python reader and the JSON Schema (ARM resource types are case-insensitive); the factory's
# CheckContract compares the whole id with toLower() against the expected workspace (adf/pipeline/pl_read_pointer).
CODE_ID_PATTERN = (
    f"^/{_any_case('subscriptions')}/[^/]+/{_any_case('resourceGroups')}/[^/]+/{_any_case('providers')}/"
    f"{_any_case('Microsoft.MachineLearningServices')}/(?:{_any_case('workspaces')}|{_any_case('registries')})/"
    f"[^/]+/{_any_case('codes')}/(?P<name>[^/]+)/{_any_case('versions')}/(?P<version>[^/]+)$"
)
_CODE_ID_RE = re.compile(CODE_ID_PATTERN)
UTF8_BOM = b"\xef\xbb\xbf"


def utc_now_iso() -> str:
    """Now, as the contract writes timestamps: ISO 8601 UTC with microseconds and ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CodeAssetPointer(BaseModel):
    """The pointer document. Consumers depend on ``schemaVersion``, ``version`` and ``assetId`` only."""

    model_config = ConfigDict(extra="allow", title="CodeAssetPointer")

    schemaVersion: Literal[1] = Field(1, description="Contract version; readers refuse any other value.")
    assetName: StrictStr = Field(pattern=ASSET_NAME_RE, description="Azure ML code asset name.")
    version: StrictStr = Field(min_length=1, description="The version the SDK returned (result.version).")
    assetId: StrictStr = Field(
        description="Full ARM id of the code version: what an Azure ML job's codeId needs. Readers that know "
        "their workspace (pointer read, the factory's CheckContract) refuse an id of another workspace.",
        json_schema_extra={"pattern": CODE_ID_PATTERN.replace("?P<name>", "").replace("?P<version>", "")},
    )
    requestedVersion: StrictStr | None = Field(None, description="The version CI asked for (may differ: dedup).")
    contentHash: StrictStr | None = Field(None, description="AML content hash (sha256, hashVersion 202208).")
    workspaceName: StrictStr | None = None
    resourceGroup: StrictStr | None = None
    subscriptionId: StrictStr | None = None
    buildId: StrictStr | None = None
    sourceBranch: StrictStr | None = None
    sourceVersion: StrictStr | None = None
    registeredAtUtc: StrictStr | None = Field(
        None, description="When the SDK returned. Absent in pointers other tools wrote; readers never invent it."
    )
    publishedAtUtc: StrictStr | None = Field(None, description="When this pointer document was written.")
    rollbackOf: StrictStr | None = Field(None, description="History blob this publication restored, if any.")

    @model_validator(mode="after")
    def _asset_id_names_this_version(self) -> CodeAssetPointer:
        match = _CODE_ID_RE.match(self.assetId)
        if not match:
            raise ValueError(
                "assetId must be the full ARM id of a code version "
                "(/subscriptions/…/workspaces/{ws}/codes/{name}/versions/{version})"
            )
        if match["name"] != self.assetName or match["version"] != self.version:
            raise ValueError(
                f"assetId names {match['name']}:{match['version']} but the pointer says "
                f"{self.assetName}:{self.version}"
            )
        return self


def pointer_json_schema() -> dict[str, Any]:
    """The JSON Schema generated from the model (the checked-in copy must equal this)."""
    schema = CodeAssetPointer.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://cicd-tools.dev/schemas/code-asset-pointer.schema.json"
    schema["additionalProperties"] = True
    # Readers refuse a document without these three, so the schema requires them too.
    schema["required"] = sorted({*schema.get("required", []), "schemaVersion", "version", "assetId"})
    schema["$comment"] = (
        "Byte-level rules a schema cannot state, checked by `pointer read` and the factory's CheckContract alike:"
        f" the blob is at most {MAX_POINTER_BYTES} bytes of UTF-8 and starts with '{{' (no byte order mark)."
    )
    return schema


def pointer_blob_name(asset: str) -> str:
    """Raises: UsageError for a name Azure ML would refuse (it would also escape the blob path)."""
    return f"code-assets/{validate_asset_name(asset)}/latest.json"


def history_prefix(asset: str) -> str:
    """Raises: UsageError for a name Azure ML would refuse."""
    return f"code-assets/{validate_asset_name(asset)}/history/"


def parse_utc(value: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime, or None when absent or not understood (never guessed)."""
    if not value:
        return None
    text = value.strip()
    # .NET writes 7 fractional digits (2018-04-15T13:00:00.0000000Z); Python reads at most 6.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def history_blob_name(asset: str, published_at: str, version: str) -> str:
    return f"{history_prefix(asset)}{published_at}_{version}.json"


def parse_pointer(
    raw: bytes, *, source: str, asset: str | None = None, workspace_id: str | None = None
) -> CodeAssetPointer:
    """Parse and validate a pointer blob: the one validator (the schema and CheckContract state the same rules).

    ``asset``: the asset the reader asked for (the document must name it). ``workspace_id``: the reader's
    workspace (``/subscriptions/…/workspaces/{ws}``); the ``assetId`` must be a code version in it.

    Raises: ContractViolation naming what was wrong.
    """
    if len(raw) > MAX_POINTER_BYTES:
        raise ContractViolation(
            f"{source} holds more than {MAX_POINTER_BYTES} bytes (64 KiB); a pointer is a small JSON document,"
            " so this blob is not one and was not read",
            hint="Replace it with `cicd-tools pointer write --force-replace` (history records are kept); "
            "check which tool wrote this blob.",
            code="PointerTooLarge",
        )
    if raw.startswith(UTF8_BOM) or (raw[:1] != b"{" and raw.lstrip()[:1] == b"{"):
        what = "a UTF-8 byte order mark" if raw.startswith(UTF8_BOM) else "whitespace"
        raise ContractViolation(
            f"{source} starts with {what}; the contract wants the JSON object's '{{' as its first byte (the factory"
            " checks the first byte the same way)",
            hint="Republish with `cicd-tools pointer write` (it writes no BOM), or save the file as UTF-8 without"
            " BOM (PowerShell 5: Set-Content -Encoding UTF8 adds one).",
            code="PointerBOM" if raw.startswith(UTF8_BOM) else "PointerMalformed",
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractViolation(f"{source} is not JSON: {exc}", code="PointerMalformed") from None
    except RecursionError:  # 64 KiB of "[" nests deeper than the stack
        raise ContractViolation(f"{source} nests too deeply to be a pointer", code="PointerMalformed") from None
    if not isinstance(doc, dict):
        raise ContractViolation(f"{source} is not a JSON object", code="PointerMalformed")
    if doc.get("schemaVersion") != SCHEMA_VERSION:
        raise ContractViolation(
            f"{source} has schemaVersion {doc.get('schemaVersion')!r}; this reader understands {SCHEMA_VERSION}",
            hint="Upgrade cicd-tools, or the blob was not written by it (foreign blob).",
            code="PointerSchemaVersion",
        )
    try:
        pointer = CodeAssetPointer.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}" for err in exc.errors()
        )
        raise ContractViolation(f"{source} violates the pointer contract: {problems}", code="PointerInvalid") from None
    if asset is not None and pointer.assetName != asset:
        raise ContractViolation(f"{source} names asset {pointer.assetName!r}, not {asset!r}", code="PointerInvalid")
    if workspace_id is not None:
        check_workspace(pointer, workspace_id, source=source)
    return pointer


def check_workspace(pointer: CodeAssetPointer, workspace_id: str, *, source: str) -> None:
    """The ``assetId`` must be this workspace's code version (ARM ids compare case-insensitively).

    Raises: ContractViolation (PointerForeignWorkspace).
    """
    expected = f"{workspace_id}/codes/{pointer.assetName}/versions/{pointer.version}"
    if pointer.assetId.lower() != expected.lower():
        raise ContractViolation(
            f"{source} points at {pointer.assetId}, not at a code version of this workspace ({workspace_id})",
            hint="A job of this workspace cannot run another workspace's code: republish the pointer from this"
            " workspace's registration (`code register --pointer`).",
            code="PointerForeignWorkspace",
        )


def _serialize(pointer: CodeAssetPointer) -> bytes:
    return (json.dumps(pointer.model_dump(mode="json", exclude_none=False), indent=2) + "\n").encode("utf-8")


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


def superseded_by(current: CodeAssetPointer, new: CodeAssetPointer) -> bool:
    """Whether ``current`` holds a newer registration than ``new``; unknowable (a time missing) is not newer."""
    current_at, new_at = parse_utc(current.registeredAtUtc), parse_utc(new.registeredAtUtc)
    if current_at is None or new_at is None:
        if current.registeredAtUtc != new.registeredAtUtc:
            log.info("pointer %s: registration time of %s unknown; the supersede check does not apply",
                     new.assetName, "the current pointer" if current_at is None else "this publication")
        return False
    return current_at > new_at


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
        body = _serialize(pointer)
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
    body = _serialize(pointer)
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
