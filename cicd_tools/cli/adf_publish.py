"""``cicd-tools adf deploy PATH`` and ``adf diff PATH``: publish a factory folder, compare it with the factory."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING

from cicd_tools.cli._base import Context, Outcome, settings_from_args
from cicd_tools.support.errors import ExitCode

if TYPE_CHECKING:
    from cicd_tools.adf.publish_operations import FactoryPublishRequest

log = logging.getLogger("cicd_tools.adf")


def register_publish(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cicd_tools.cli._adf_common import add_factory_flags

    deploy = sub.add_parser(
        "deploy",
        help="publish a factory folder (ADF Git layout) to a factory, in dependency order, only what changed",
        description="Integration runtimes, managed private endpoints, linked services, datasets, pipelines, "
        "triggers (running ones stopped before and restarted after). Exit codes: 0 deployed (or nothing to do), "
        "2 bad folder or flags, or `adf lint` finds errors (--allow-lint-errors publishes anyway), 3 an Azure call "
        "failed (the steps before it stay deployed).",
    )
    deploy.add_argument("path", metavar="PATH", help="factory folder in ADF Git layout (holds pipeline/)")
    add_factory_flags(deploy)
    deploy.add_argument("--global", dest="globals", action="append", default=[], metavar="NAME=VALUE",
                        help="override a global parameter from the factory file (typed like the declared one)")
    deploy.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    deploy.add_argument("--delete-orphans", action="store_true",
                        help="also delete published resources the folder does not have")
    deploy.add_argument("--allow-lint-errors", action="store_true",
                        help="publish even when `adf lint PATH` finds errors (each is still logged as a warning)")
    deploy.set_defaults(handler=_deploy)

    diff = sub.add_parser(
        "diff",
        help="what differs between a factory folder and the published factory, per resource",
        description="Runs (createRun, triggers) use the PUBLISHED factory; debug runs in the ADF studio use your "
        "branch. Exit codes: 0 identical, 1 they differ, 2 bad folder or flags, 3 an Azure call failed.",
    )
    diff.add_argument("path", metavar="PATH", help="factory folder in ADF Git layout (holds pipeline/)")
    add_factory_flags(diff)
    diff.add_argument("--global", dest="globals", action="append", default=[], metavar="NAME=VALUE",
                      help="compare as if deployed with this global parameter override")
    diff.set_defaults(handler=_diff)


def _request(args: argparse.Namespace) -> FactoryPublishRequest:
    from pathlib import Path

    from cicd_tools.adf.publish_operations import FactoryPublishRequest
    from cicd_tools.cli._adf_common import parse_pairs

    return FactoryPublishRequest(
        path=Path(args.path),
        settings=settings_from_args(args, subscription_id="subscription_id", resource_group="resource_group",
                                    factory="factory", arm_endpoint="arm_endpoint"),
        global_overrides=parse_pairs(args.globals, "--global"),
        delete_orphans=bool(getattr(args, "delete_orphans", False)), dry_run=bool(getattr(args, "dry_run", False)))


def _diff(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.publish_operations import diff_factory

    result = diff_factory(_request(args))
    changes, name = result.changes, result.factory
    data = {"factory": name, "path": args.path, "identical": result.identical,
            "changes": [c.to_dict() for c in changes], "armCalls": result.arm_calls}
    lines = []
    for change in changes:
        lines.append(f"{change.action:<7} {change.kind}/{change.name}")
        for d in change.differences[:20]:
            repo_side = json.dumps(d["repo"]) if "repo" in d else "(absent)"
            pub_side = json.dumps(d["published"]) if "published" in d else "(absent)"
            lines.append(f"    {d['path']}: repo {repo_side[:120]} | published {pub_side[:120]}")
    lines.append(f"factory {name}: " + ("identical to " + args.path if not changes
                                        else f"{len(changes)} resource(s) differ from {args.path}"))
    return Outcome(data=data, text="\n".join(lines), exit_code=int(ExitCode.OK if not changes else ExitCode.FINDINGS))


def _lint_gate(args: argparse.Namespace) -> None:
    """What `adf lint PATH` flags as an error is not published without --allow-lint-errors (nothing read yet)."""
    from pathlib import Path

    from cicd_tools.adf.lint import lint_paths
    from cicd_tools.support.cisafe import shown
    from cicd_tools.support.errors import UsageError

    if not Path(args.path).is_dir():
        return  # not a factory folder: deploy itself says so (no such folder / not a factory folder)
    errors = lint_paths([Path(args.path)]).at_or_above("error")
    if not errors:
        return
    lines = [f"{f.rule} {shown(f.file)}{f':{f.line}' if f.line else ''}: {f.message}" for f in errors]
    if args.allow_lint_errors:
        for line in lines:
            log.warning("publishing despite a lint error (--allow-lint-errors): %s", line)
        return
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    raise UsageError(f"`adf lint {shown(args.path)}` finds {len(errors)} error(s), so nothing was published: "
                     + "; ".join(lines[:3]) + more, code="LintErrors",
                     hint=f"Fix them (`cicd-tools adf lint {shown(args.path)}` says how), or publish anyway with"
                          " --allow-lint-errors.")


def _deploy(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.publish_operations import deploy_factory

    _lint_gate(args)  # nothing read from the factory yet
    result = deploy_factory(_request(args))
    steps, name = result.steps, result.factory
    data = {"factory": name, "path": args.path, "dryRun": result.dry_run,
            "plan": [{"action": s.action, "kind": s.kind, "name": s.name} for s in steps],
            "armCalls": result.arm_calls}
    head = "plan (dry run, nothing changed)" if result.dry_run else "deployed"
    lines = [f"{head}: {len(steps)} step(s) for factory {name}"] + [f"  {s.describe()}" for s in steps]
    if not steps:
        lines = [f"factory {name} already matches {args.path}: nothing to deploy"]
    return Outcome(data=data, text="\n".join(lines))
