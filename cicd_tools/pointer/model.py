"""The ``latest.json`` pointer document: the model, its JSON Schema, blob names and the one validator.

``{container}/code-assets/{assetName}/latest.json`` holds the version the SDK returned; every publication also
lands as ``code-assets/{assetName}/history/{publishedAtUtc}_{version}.json``. No I/O here: the blob reads and
writes are in ``pointer/contract.py``.

Readers never invent data: a pointer written by another tool without ``registeredAtUtc`` stays without
it (the supersede check needs both times), and a blob over ``MAX_POINTER_BYTES`` is refused unread.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

from cicd_tools.codeassets.names import AML_NAME_PATTERN, validate_asset_name
from cicd_tools.support.errors import ContractViolation

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


def serialize_pointer(pointer: CodeAssetPointer) -> bytes:
    """The bytes the contract writes: indented JSON, every field (None too), a final newline."""
    return (json.dumps(pointer.model_dump(mode="json", exclude_none=False), indent=2) + "\n").encode("utf-8")


def superseded_by(current: CodeAssetPointer, new: CodeAssetPointer) -> bool:
    """Whether ``current`` holds a newer registration than ``new``; unknowable (a time missing) is not newer."""
    current_at, new_at = parse_utc(current.registeredAtUtc), parse_utc(new.registeredAtUtc)
    if current_at is None or new_at is None:
        if current.registeredAtUtc != new.registeredAtUtc:
            log.info("pointer %s: registration time of %s unknown; the supersede check does not apply",
                     new.assetName, "the current pointer" if current_at is None else "this publication")
        return False
    return current_at > new_at
