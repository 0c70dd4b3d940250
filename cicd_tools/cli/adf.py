"""``cicd-tools adf ...``: Azure Data Factory helpers. ``eval`` evaluates one expression value locally.

Each subcommand registers in its own ``_register_*`` function, called from ``register``; add new ones
(``lint``, ``run-local``) the same way.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from cicd_tools.cli._adf_common import _json_or_string, parse_pairs
from cicd_tools.cli._base import Context, Outcome
from cicd_tools.support.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "adf", help="Azure Data Factory: evaluate expressions, lint, run locally; deploy, diff, run in the factory"
    )
    adf_sub = parser.add_subparsers(dest="adf_command", metavar="ACTION", required=True)
    _register_eval(adf_sub)
    # Further ADF subcommands register here, e.g. _register_lint(adf_sub), _register_run_local(adf_sub).
    from cicd_tools.cli.adf_local import register_local  # lint, run-local (imports nothing heavy)

    register_local(adf_sub)
    from cicd_tools.cli.adf_cloud import register_cloud  # run, deploy, diff (the SDK loads in handlers)

    register_cloud(adf_sub)


# --- adf eval ---------------------------------------------------------------------------------------


def _register_eval(adf_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = adf_sub.add_parser(
        "eval",
        help="evaluate an ADF expression value locally (as it stands in pipeline JSON)",
        description=(
            "Evaluate a JSON string value the way ADF does: '@concat(...)' keeps its type, "
            "'Run @{pipeline().RunId}' interpolates into a string, '@@x' is the literal '@x'. "
            "KEY=VALUE values are read as JSON when they parse as JSON, else as strings."
        ),
    )
    p.add_argument("value", metavar="VALUE", help="the value, e.g. \"@concat('a', pipeline().parameters.p)\"")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter")
    p.add_argument(
        "--global", dest="globals", action="append", default=[], metavar="NAME=VALUE", help="global parameter"
    )
    p.add_argument("--variable", action="append", default=[], metavar="NAME=VALUE", help="pipeline variable")
    p.add_argument(
        "--activity-output", action="append", default=[], metavar="ACTIVITY=JSON", help="an activity's output"
    )
    p.add_argument(
        "--activity-error",
        action="append",
        default=[],
        metavar="ACTIVITY=JSON",
        help="a failed activity's error, read as activity('A').error.message / .errorCode (an object, e.g."
        " '{\"errorCode\": \"2108\", \"message\": \"...\"}', or a plain message); the activity's status is Failed",
    )
    p.add_argument("--item", metavar="JSON", help="the current ForEach item, for item()")
    p.add_argument(
        "--system",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline() system property, e.g. Pipeline=ingest, TriggerName=nightly",
    )
    p.add_argument("--run-id", help="pipeline().RunId (default: a new GUID)")
    p.add_argument("--now", metavar="ISO", help="the time utcNow() returns, e.g. 2024-05-01T06:00:00Z (default: now)")
    p.set_defaults(handler=_eval)


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise UsageError(f"--now takes an ISO 8601 time such as 2024-05-01T06:00:00Z, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _activity_error(name: str, value: Any) -> dict[str, Any]:
    """The error object ADF gives a failed activity (errorCode, message, failureType, target); a plain string is
    the message. Keys given win, so a test can reproduce any recorded error. Raises: UsageError."""
    if isinstance(value, str):
        value = {"message": value}
    if not isinstance(value, dict):
        raise UsageError(f"--activity-error {name}: give an object such as {{\"errorCode\": \"2108\", \"message\":"
                         f" \"...\"}} or a plain message, got {json.dumps(value)}")
    return {"errorCode": "", "message": "", "failureType": "UserError", "target": name, **value}


def _eval(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.adf.expressions import ActivityResult, EvalContext, evaluate_value
    from cicd_tools.adf.expressions.datefmt import Stamp, format_timestamp

    now = _parse_now(args.now)
    system: dict[str, Any] = {
        "RunId": args.run_id or str(uuid.uuid4()),
        "TriggerTime": format_timestamp(Stamp.from_datetime(now.replace(tzinfo=None), utc=True)),
    }
    system.update(parse_pairs(args.system, "--system"))
    outputs: dict[str, Any] = parse_pairs(args.activity_output, "--activity-output", require_json=True)
    for name, error in parse_pairs(args.activity_error, "--activity-error").items():
        failed = _activity_error(name, error)
        outputs[name] = ActivityResult(output=outputs.get(name, {}), status="Failed", error=failed)
    eval_ctx = EvalContext(
        parameters=parse_pairs(args.param, "--param"),
        global_parameters=parse_pairs(args.globals, "--global"),
        variables=parse_pairs(args.variable, "--variable"),
        activity_outputs=outputs,
        items=[] if args.item is None else [_json_or_string(args.item, "--item")],
        system=system,
        now=lambda: now,
    )
    result = evaluate_value(args.value, eval_ctx)
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return Outcome(data=result, text=text)
