"""``cicd-tools pointer write|read|history|rollback|schema``: the latest.json contract ADF reads."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import run_provenance
from cicd_tools.cli._base import Context, Outcome, env_default, settings_from_args
from cicd_tools.cli._clients import add_storage_flags, container_client, storage_settings
from cicd_tools.codeassets.names import asset_name_arg
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import UsageError

if TYPE_CHECKING:
    from cicd_tools.pointer.operations import PointerWriteRequest



def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("pointer", help="publish and read the code-asset pointer (latest.json)")
    sub = parser.add_subparsers(dest="pointer_command", metavar="ACTION", required=True)

    write = sub.add_parser("write", help="publish a pointer (compare-and-swap, history, read-back)")
    write.add_argument("--asset", required=True, type=asset_name_arg, help="code asset name, e.g. training-code")
    write.add_argument("--version", required=True, help="the version the SDK returned (never the requested one)")
    write.add_argument("--asset-id", help="full ARM id of the code version (default: built from the workspace)")
    write.add_argument("--requested-version", help="the version CI asked for (provenance)")
    write.add_argument("--content-hash", help="AML content hash (provenance)")
    write.add_argument("--force-replace", action="store_true",
                       help="overwrite a latest.json that violates the contract (oversized, not JSON, BOM); its "
                            "history records are kept")
    _add_workspace_flags(write)
    add_storage_flags(write)
    write.set_defaults(handler=_write)

    read = sub.add_parser("read", help="read and validate the pointer of an asset")
    read.add_argument("--asset", required=True, type=asset_name_arg, help="code asset name")
    read.add_argument("--field", help="print only this field (e.g. version, assetId)")
    env_default(read, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the workspace")
    env_default(read, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the workspace")
    env_default(read, "--workspace", env="CICD_WORKSPACE",
                help="Azure ML workspace the assetId must belong to (checked when the three are known)")
    add_storage_flags(read)
    read.set_defaults(handler=_read)

    history = sub.add_parser("history", help="list every publication of an asset, newest first")
    history.add_argument("--asset", required=True, type=asset_name_arg, help="code asset name")
    add_storage_flags(history)
    history.set_defaults(handler=_history)

    rollback = sub.add_parser("rollback", help="republish an earlier history record")
    rollback.add_argument("--asset", required=True, type=asset_name_arg, help="code asset name")
    rollback.add_argument("--to", required=True, dest="to_version", metavar="VERSION", help="version to restore")
    _add_workspace_flags(rollback)
    add_storage_flags(rollback)
    rollback.set_defaults(handler=_rollback)

    schema = sub.add_parser("schema", help="print the pointer's JSON Schema")
    schema.add_argument("--write", type=Path, metavar="FILE", help="write it to FILE instead of stdout")
    schema.set_defaults(handler=_schema)


def _add_workspace_flags(parser: argparse.ArgumentParser) -> None:
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the workspace")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the workspace")
    env_default(parser, "--workspace", env="CICD_WORKSPACE", help="Azure ML workspace name")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint")
    parser.add_argument(
        "--skip-workspace-check", action="store_true",
        help="publish without asking the workspace whether it holds the version (not recommended)",
    )


def _workspace_settings(args: argparse.Namespace) -> Settings:
    return settings_from_args(
        args, subscription_id="subscription_id", resource_group="resource_group", workspace="workspace",
        arm_endpoint="arm_endpoint",
    )


def _version_check(args: argparse.Namespace) -> Callable[[str, str], bool] | None:
    """The workspace lookup the writer uses to refuse a version Azure ML does not hold."""
    if args.skip_workspace_check:
        return None
    from cicd_tools.credentials import build_credential
    from cicd_tools.pointer.operations import workspace_version_check

    return workspace_version_check(_workspace_settings(args), build_credential())


def _write_request(args: argparse.Namespace) -> PointerWriteRequest:
    from cicd_tools.pointer.operations import PointerWriteRequest

    return PointerWriteRequest(
        asset=args.asset, version=args.version, workspace=_workspace_settings(args), asset_id=args.asset_id or None,
        requested_version=args.requested_version, content_hash=args.content_hash)


def _publish_outcome(result: Any, verb: str) -> Outcome:
    p = result.pointer
    data = {
        "asset": p.assetName,
        "version": p.version,
        "assetId": p.assetId,
        "previousVersion": result.previous_version,
        "etag": result.etag,
        "historyBlob": result.history_blob,
        "attempts": result.attempts,
        "verified": result.verified,
        "replaced": result.replaced,
        "pointer": p.model_dump(mode="json"),
    }
    text = (
        f"{verb} {p.assetName} -> version {p.version} (was {result.previous_version or 'unset'})\n"
        f"  assetId: {p.assetId}\n  history: {result.history_blob}\n"
        f"  read-back: {'verified' if result.verified else 'superseded by a newer publication'}"
        + (f"\n  replaced a broken pointer: {result.replaced}" if result.replaced else "")
    )
    return Outcome(data=data, text=text)


def _write(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.pointer.contract import publish_pointer
    from cicd_tools.pointer.operations import pointer_for

    settings = storage_settings(args)
    pointer = pointer_for(_write_request(args), run_provenance(), source="--asset-id")
    result = publish_pointer(container_client(settings), pointer, version_exists=_version_check(args),
                             force_replace=args.force_replace)
    ctx.ci.set_output("pointerVersion", result.pointer.version)
    return _publish_outcome(result, "published")


def _read(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.pointer.operations import PointerReadRequest, read_latest

    pointer = read_latest(PointerReadRequest(args.asset, storage_settings(args), _workspace_settings(args)))
    data = pointer.model_dump(mode="json")
    if args.field:
        if args.field not in data:
            raise UsageError(f"the pointer has no field {args.field!r}; fields: {', '.join(data)}")
        value = data[args.field]
        return Outcome(data=value, text=value if isinstance(value, str) else json.dumps(value))
    text = "\n".join(f"{k}: {v}" for k, v in data.items() if v is not None)
    return Outcome(data=data, text=text)


def _history(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.pointer.operations import publication_history

    entries = publication_history(args.asset, storage_settings(args))
    data = [{"blob": e.blob, **e.record.model_dump(mode="json")} for e in entries]
    lines = [f"{'published (UTC)':<28} {'version':<12} {'requested':<12} rollbackOf"]
    for entry in entries:
        rec = entry.record
        lines.append(
            f"{rec.publishedAtUtc or rec.registeredAtUtc or '-':<28} {rec.version:<12} "
            f"{rec.requestedVersion or '-':<12} {rec.rollbackOf or ''}"
        )
    if not entries:
        lines.append(f"(no publications of {args.asset})")
    return Outcome(data=data, text="\n".join(lines))


def _rollback(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.pointer.operations import PointerRollbackRequest, roll_back

    workspace = None if args.skip_workspace_check else _workspace_settings(args)
    result = roll_back(PointerRollbackRequest(args.asset, args.to_version, storage_settings(args), workspace))
    ctx.ci.set_output("pointerVersion", result.pointer.version)
    return _publish_outcome(result, "rolled back")


def _schema(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.pointer.model import pointer_json_schema

    schema = pointer_json_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if args.write:
        from cicd_tools.support.outpath import printable, write_atomic

        if args.write.is_dir():
            raise UsageError(f"--write {printable(str(args.write))} is a folder; name the file to write",
                             hint=f"e.g. --write {printable(str(args.write / 'code-asset-pointer.schema.json'))}")
        try:
            write_atomic(args.write, text, what="--write file")
        except OSError as exc:
            raise UsageError(f"cannot write --write {printable(str(args.write))}: {exc.strerror or exc}",
                             hint="Name a file in a folder you can write to.") from None
        return Outcome(data={"written": str(args.write)}, text=f"wrote {printable(str(args.write))}")
    return Outcome(data=schema, text=text)
