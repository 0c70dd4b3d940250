"""`cicd-tools code ...`: Azure ML code assets (hash now; plan and register join this group).

Each subcommand lives in its own ``_register_x(code_sub)``. ``code hash`` never imports azure.ai.ml:
it uses the toolkit's own hash, which tests prove equal to the SDK's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cicd_tools.cli._base import Context, Outcome, missing_subcommand


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``code`` group and its subcommands."""
    code = subparsers.add_parser(
        "code",
        help="Azure ML code assets: content hash, plan, register",
        description="Azure ML code assets. Hashes match azure-ai-ml's own (hashVersion 202208).",
    )
    code.set_defaults(handler=missing_subcommand(code))
    code_sub = code.add_subparsers(dest="code_command", metavar="SUBCOMMAND")
    _register_hash(code_sub)
    _register_plan(code_sub)
    _register_register(code_sub)



# --- code hash ------------------------------------------------------------------------------------


def _register_hash(code_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = code_sub.add_parser(
        "hash",
        help="print the Azure ML content hash of a code folder (no Azure call, no SDK import)",
        description=(
            "Compute the content hash Azure ML uses to deduplicate code assets (hashVersion 202208):"
            " the root .amlignore (else .gitignore) applies, hidden files count, symlinks are followed."
            " Same hash = Azure ML returns the existing version instead of uploading."
        ),
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="the code folder (or a single file)")
    parser.add_argument(
        "--repo-root",
        type=Path,
        metavar="DIR",
        default=None,
        help="refuse files that resolve outside DIR (a symlink pointing out of the repository)",
    )
    parser.add_argument(
        "--list-files",
        action="store_true",
        help="also list the files in hash order (the `files` array with --output json)",
    )
    parser.set_defaults(handler=_hash)


def _hash(args: argparse.Namespace, ctx: Context) -> Outcome:
    # Imported here so `cicd-tools --help` stays cheap; this module is light, not azure.ai.ml.
    from cicd_tools.codeassets.hashing import HASH_VERSION, content_hash
    from cicd_tools.support.cisafe import shown

    result = content_hash(args.path, repo_root=args.repo_root)
    data: dict[str, Any] = {
        "path": str(args.path),
        "hash": result.sha256,
        "hashVersion": HASH_VERSION,
        "fileCount": result.file_count,
        "totalBytes": result.total_bytes,
    }
    lines = [
        f"{result.sha256}  {shown(args.path)}",
        f"{result.file_count} files, {result.total_bytes} bytes (hashVersion {HASH_VERSION})",
    ]
    if args.list_files:
        data["files"] = list(result.files)
        lines.extend(f"  {shown(name)}" for name in result.files)
    return Outcome(data=data, text="\n".join(lines))


# --- code plan / code register (handlers in _code_assets.py) ---------------------------------------


def _register_plan(code_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cicd_tools.cli import _code_assets

    parser = code_sub.add_parser(
        "plan",
        help="say what `code register` will do, before uploading anything (no SDK import)",
        description=(
            "Hash the code as Azure ML does and ask the workspace: does it already hold this content under"
            " NAME (then registration returns that version and uploads nothing), and does the requested"
            " version already exist with other content (then registration would fail)."
        ),
    )
    _code_assets.add_asset_flags(parser)
    _code_assets.add_workspace_flags(parser)
    parser.set_defaults(handler=_code_assets.plan)


def _register_register(code_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cicd_tools.cli import _code_assets
    from cicd_tools.cli._clients import add_storage_flags

    parser = code_sub.add_parser(
        "register",
        help="register code assets through azure-ai-ml and publish the version it ACTUALLY returned",
        description=(
            "Register with MLClient._code.create_or_update. Azure ML dedups by name + content hash, so the"
            " returned version can be older than the requested one; outputs, the result file and the"
            " pointer always carry the returned version."
        ),
    )
    _code_assets.add_asset_flags(parser)
    _code_assets.add_workspace_flags(parser)
    parser.add_argument("--pointer", action="store_true",
                        help="publish latest.json with the returned version (storage flags below)")
    parser.add_argument("--result-file", type=Path, metavar="FILE", help="also write the JSON result to FILE")
    parser.add_argument("--output-var-version", default="codeVersion", metavar="NAME",
                        help="CI output holding the returned version (default codeVersion)")
    parser.add_argument("--output-var-asset-id", default="codeAssetId", metavar="NAME",
                        help="CI output holding the asset's ARM id (default codeAssetId)")
    add_storage_flags(parser)
    parser.set_defaults(handler=_code_assets.register)
