"""Handlers of ``code plan`` and ``code register`` (parsers live in ``code.py``).

``plan`` never imports azure.ai.ml; ``register`` is the only command that does, inside
``cicd_tools.codeassets.sdk``.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.ci import CiKind
from cicd_tools.cli._base import Context, Outcome, env_default, settings_from_args
from cicd_tools.support.errors import CicdError, UsageError
from cicd_tools.support.files import write_json_atomic
from cicd_tools.support.outpath import OutputRefused, printable, resolve_output

__all__ = ["write_json_atomic"]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cicd_tools.codeassets.register import AssetOutcome, AssetSpec
    from cicd_tools.codeassets.workspace import WorkspaceRef


def add_workspace_flags(parser: argparse.ArgumentParser) -> None:
    """The workspace the code assets belong to, and the ARM endpoint serving it."""
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the workspace")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the workspace")
    env_default(parser, "--workspace", env="CICD_WORKSPACE", help="Azure ML workspace name")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint (the sandbox prints its own)")


def add_asset_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="code asset name (with --path)")
    parser.add_argument("--path", type=Path, help="the code folder to register (with --name)")
    parser.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                        help="an asset to handle; repeat for several (registered concurrently)")
    parser.add_argument("--version", help="the version to request (default: the CI build id)")
    parser.add_argument("--unique", action="store_true",
                        help="stage a copy with a version marker so unchanged code still gets a new version")
    parser.add_argument("--name-marker", action="store_true",
                        help="stage a copy with a marker file naming the asset: Azure ML's hash dedup then works"
                        " within a name but never across names (one folder registered under two names)")
    env_default(parser, "--repo-root", env="CICD_REPO_ROOT", type=Path,
                help="refuse files that resolve outside this folder (default: the CI checkout, else the"
                " git root above the code path)")


def asset_specs(args: argparse.Namespace) -> tuple[list[AssetSpec], bool]:
    """The assets named on the command line, and whether they came as ``--asset`` (a batch)."""
    from cicd_tools.codeassets.register import AssetSpec, parse_asset_arg, validate_name

    if args.asset:
        if args.name or args.path:
            raise UsageError("use either --name/--path or --asset NAME=PATH, not both")
        return [parse_asset_arg(value) for value in args.asset], True
    if not args.name or args.path is None:
        raise UsageError("name the asset: --name N --path P (or --asset N=P, repeatable)")
    return [AssetSpec(validate_name(args.name), args.path)], False


def workspace_ref(args: argparse.Namespace) -> WorkspaceRef:
    from cicd_tools.codeassets.workspace import WorkspaceRef
    settings = settings_from_args(
        args, subscription_id="subscription_id", resource_group="resource_group", workspace="workspace",
        arm_endpoint="arm_endpoint",
    )
    return WorkspaceRef.from_settings(settings)


def _repo_root(args: argparse.Namespace, path: Path) -> Path:
    from cicd_tools.codeassets.register import find_repo_root

    return Path(args.repo_root) if args.repo_root else find_repo_root(path)


# --- code plan ------------------------------------------------------------------------------------------


def plan(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.codeassets.plan import plan_registration
    from cicd_tools.codeassets.register import default_version, validate_version
    from cicd_tools.codeassets.workspace import WorkspaceCodes
    from cicd_tools.credentials import build_credential

    specs, batch = asset_specs(args)
    requested = args.version or default_version()
    if requested:
        validate_version(requested)
    workspace = workspace_ref(args)
    with WorkspaceCodes(workspace, build_credential()) as codes:
        plans = [plan_registration(codes, s.name, s.path, requested, unique=args.unique,
                                   repo_root=_repo_root(args, s.path), name_marker=args.name_marker)
                 for s in specs]
    lines: list[str] = []
    for item in plans:
        if item.name_mismatch and item.existing is not None:
            head = (f"{item.name}: content already registered as {item.existing.name}:{item.existing.version};"
                    " registration will return that asset and fail (exit 5)")
        elif item.dedup and item.existing is not None:
            head = f"{item.name}: content already registered as version {item.existing.version}; nothing to upload"
        elif item.requested_version:
            head = f"{item.name}: new content; registration will upload and create version {item.requested_version}"
        else:
            head = f"{item.name}: new content; registration will upload (no version requested yet)"
        lines.append(head)
        lines.append(f"  hash {item.content_hash} ({item.file_count} files, {item.total_bytes} bytes)")
        for warning in item.warnings():
            lines.append(f"  warning: {warning}")
            _annotate(ctx, "warning", warning, f"code plan {item.name}")
    data: Any = [p.to_json() for p in plans] if batch else plans[0].to_json()
    return Outcome(data=data, text="\n".join(lines))


# --- code register --------------------------------------------------------------------------------------


def register(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.codeassets import register as reg
    from cicd_tools.codeassets.operations import RegisterRequest, register_code
    from cicd_tools.credentials import build_credential
    from cicd_tools.support.terminal import colour_allowed

    specs, batch = asset_specs(args)
    if args.result_file:  # a device, FIFO, folder or missing folder: refused before anything is registered
        resolve_output(args.result_file, what="result file")
    requested = reg.resolve_requested_version(args.version)
    workspace = workspace_ref(args)
    container = None
    if args.pointer:
        from cicd_tools.cli._clients import container_client, storage_settings

        container = container_client(storage_settings(args))
    # The SDK's tqdm bar is for a person at a terminal; CI logs get our progress lines instead.
    show_progress = args.verbose > 0 and ctx.output == "text" and colour_allowed()
    request = RegisterRequest(workspace=workspace, specs=tuple(specs), requested_version=requested,
                              unique=args.unique, name_marker=args.name_marker,
                              repo_root=Path(args.repo_root) if args.repo_root else None, show_progress=show_progress)
    outcomes = register_code(request, build_credential(), container=container)
    # Evidence first: outputs, the result file and stdout carry every registration before any error is reported.
    _set_outputs(ctx, args, outcomes, batch)
    docs = [outcome_json(o) for o in outcomes]
    data: Any = docs if batch else docs[0]
    file_error = _write_result_file(args.result_file, data) if args.result_file else None
    if not batch and outcomes[0].error is not None:
        # One asset that failed to register: the CLI reports it (stderr, JSON error document, annotation).
        if file_error is not None:
            log.error("%s", file_error.message)
        raise outcomes[0].error
    text = "\n".join(_outcome_text(o, ctx, reported_later=not batch) for o in outcomes)
    later = outcomes[0].pointer_error if not batch else None
    if later is None:
        later = file_error
    elif file_error is not None:
        log.error("%s", file_error.message)
    # A later step's failure is reported by the CLI after the result is printed, with its own exit code.
    return Outcome(data=data, text=text, exit_code=reg.worst_exit_code(outcomes), error=later)


def _write_result_file(path: Path, data: Any) -> CicdError | None:
    """Write the result file; a path that cannot be written is an error reported after the result, not a crash."""
    try:
        write_json_atomic(Path(path), data)
    except OutputRefused as exc:
        return exc
    except OSError as exc:
        return UsageError(
            f"the registration result could not be written to --result-file {printable(str(path))}:"
            f" {exc.strerror or exc}",
            hint="The registration itself stands (printed on stdout and set as CI outputs); do not re-register."
            " Point --result-file at a file in a writable folder.",
            code="ResultFileNotWritten",
        )
    return None


def output_name(var: str, asset: str, batch: bool) -> str:
    """The CI output name: ``var`` for one asset, ``{asset}_{var}`` (``-`` as ``_``) in a batch."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', asset)}_{var}" if batch else var


def _set_outputs(ctx: Context, args: argparse.Namespace, outcomes: list[AssetOutcome], batch: bool) -> None:
    for outcome in outcomes:
        if outcome.result is None or outcome.error is not None:
            continue  # e.g. another asset's name came back: nothing is output under the requested name
        name = outcome.spec.name
        ctx.ci.set_output(output_name(args.output_var_version, name, batch), outcome.result.version)
        ctx.ci.set_output(output_name(args.output_var_asset_id, name, batch), outcome.result.asset_id)


def outcome_json(outcome: AssetOutcome) -> dict[str, Any]:
    """One asset's JSON document (``--output json`` and ``--result-file``)."""
    doc: dict[str, Any] = {"name": outcome.spec.name, "path": str(outcome.spec.path)}
    result = outcome.result
    if result is not None:
        usable = not result.name_mismatch  # another asset's version is evidence, never this asset's version
        doc.update({
            "version": result.version if usable else None,
            "requestedVersion": result.requested_version,
            "assetId": result.asset_id if usable else None,
            "returnedName": result.returned_name,
            "returnedVersion": result.version,
            "returnedAssetId": result.asset_id,
            "contentHash": result.content_hash,
            "dedup": result.dedup,
            "unique": result.unique,
            "nameMarker": result.name_marker,
            "fileCount": result.file_count,
            "codeUri": result.code_uri,
            "warnings": list(result.warnings),
        })
    else:
        doc.update({"version": None, "requestedVersion": None, "assetId": None, "returnedName": None,
                    "dedup": None})
    if outcome.pointer is not None:
        doc["pointer"] = {
            "version": outcome.pointer.pointer.version,
            "previousVersion": outcome.pointer.previous_version,
            "historyBlob": outcome.pointer.history_blob,
            "verified": outcome.pointer.verified,
        }
    else:
        doc["pointer"] = None
    doc["error"] = outcome.error.to_dict() if outcome.error is not None else None
    doc["pointerError"] = outcome.pointer_error.to_dict() if outcome.pointer_error is not None else None
    doc["exitCode"] = outcome.exit_code
    return doc


def _outcome_text(outcome: AssetOutcome, ctx: Context, *, reported_later: bool = False) -> str:
    """One asset's text; ``reported_later``: the CLI reports its pointer error (after this text)."""
    name = outcome.spec.name
    result = outcome.result
    if result is None or outcome.error is not None:
        assert outcome.error is not None
        _annotate(ctx, "error", f"{outcome.error.message} {outcome.error.hint}".strip(), f"code register {name}")
        return f"{name}: FAILED ({type(outcome.error).__name__}): {outcome.error.message}"
    if result.dedup and result.older_than_requested:
        head = (f"{name}: requested version {result.requested_version}, Azure ML returned EXISTING version "
                f"{result.version} (same content; nothing uploaded). Use {result.version}.")
    elif result.dedup:
        head = f"{name}: version {result.version} already holds this content (nothing uploaded)"
    else:
        head = f"{name}: registered version {result.version} ({result.file_count} files uploaded)"
    lines = [head, f"  assetId: {result.asset_id}"]
    for warning in result.warnings:
        _annotate(ctx, "warning", warning, f"code register {name}")
        if result.older_than_requested and "already registered as version" in warning:
            continue  # the head line says it
        lines.append(f"  warning: {warning}")
    if outcome.pointer is not None:
        lines.append(f"  pointer: latest.json -> {outcome.pointer.pointer.version} "
                     f"(was {outcome.pointer.previous_version or 'unset'})")
    if outcome.pointer_error is not None and reported_later:
        lines.append(f"  pointer: NOT published ({type(outcome.pointer_error).__name__}; the error follows)")
    elif outcome.pointer_error is not None:
        _annotate(ctx, "error", outcome.pointer_error.message, f"pointer {name}")
        lines.append(f"  pointer: NOT published ({type(outcome.pointer_error).__name__}): "
                     f"{outcome.pointer_error.message}")
        if outcome.pointer_error.hint:
            lines.append(f"  hint: {outcome.pointer_error.hint}")
    return "\n".join(lines)


def _annotate(ctx: Context, level: str, message: str, title: str) -> None:
    """A CI annotation; outside CI the text output already says it (as the CLI does for errors)."""
    if ctx.ci.kind is not CiKind.PLAIN:
        ctx.ci.annotate(level, message, title=title)
