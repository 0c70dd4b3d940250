"""``cicd-tools flow``: the whole chain (firewall → smoke → register → pointers → ADF → verify → close)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import Context, Outcome
from cicd_tools.settings.keys import OVERRIDABLE, SKIP_ENV, STEP_NAMES

if TYPE_CHECKING:
    from cicd_tools.flow.operations import FlowOperations
    from cicd_tools.settings.config import LoadedConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "flow",
        help="the whole chain in one command, with guaranteed cleanup and an evidence report",
        description=(
            "firewall open → storage smoke → code register → pointer write → adf run --wait → aml verify →"
            " firewall close (always: on failure, SIGTERM and SIGINT too). Configuration: cicd-tools.toml or"
            " [tool.cicd-tools] in pyproject.toml; CICD_* variables override it, flags override those."
            " Exit codes: 0 ok, 2 configuration, 3 Azure call failed, 4 ADF run / AML job failed, 5 contract"
            " violated, 6 timeout, 130 interrupted."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default ./cicd-tools.toml, else"
                        " [tool.cicd-tools] in ./pyproject.toml) [env: CICD_CONFIG]")
    parser.add_argument("--print-config", action="store_true",
                        help="print the merged configuration and where each value came from, then exit")
    parser.add_argument("--skip", action="append", default=[], choices=STEP_NAMES, metavar="STEP",
                        help=f"skip a step (repeatable): {', '.join(STEP_NAMES)} [env: {SKIP_ENV}, comma-separated]")
    parser.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                        help="a code asset to register (repeatable; replaces code.assets of the config file)")
    for key, (var, flag) in OVERRIDABLE.items():
        parser.add_argument(flag, dest=_dest(key), metavar=key.split(".")[1].upper().replace("-", "_"),
                            help=f"{key} [env: {var}]")
    parser.set_defaults(handler=_flow)


def _dest(key: str) -> str:
    return "cfg_" + key.replace(".", "_").replace("-", "_")


def load(args: argparse.Namespace) -> LoadedConfig:
    from cicd_tools.settings.config import load_config

    cli = {key: getattr(args, _dest(key)) for key in OVERRIDABLE}
    return load_config(cli=cli, cli_assets=args.asset, cli_skip=args.skip, config_path=args.config)


def operations() -> FlowOperations:
    """The operations the flow's steps call (the same ones the commands call)."""
    from cicd_tools.flow.operations import AzureOperations

    return AzureOperations()


def missing_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """``"adf run"`` when the parser has no such (sub)command, else None."""
    current = parser
    words: list[str] = []
    for word in argv[:2]:
        if word.startswith("-"):
            break
        words.append(word)
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            break
        nxt = subs[0].choices.get(word)
        if nxt is None:
            return " ".join(words)
        current = nxt
    return None


def _print_config(loaded: LoadedConfig) -> Outcome:
    rows = loaded.flat()
    data: dict[str, Any] = {
        "configFile": str(loaded.file) if loaded.file else None,
        "values": {key: {"value": value, "source": source} for key, value, source in rows},
    }
    width = max(len(k) for k, _, _ in rows)
    lines = [f"# config file: {loaded.file or '(none)'}"]
    lines += [f"{key:<{width}} = {json.dumps(value)}  # {source}" for key, value, source in rows]
    return Outcome(data=data, text="\n".join(lines))


def _flow(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.flow import Flow
    from cicd_tools.flow.support import RecordingDialect
    from cicd_tools.report.markdown import render_markdown
    from cicd_tools.settings.config import exported

    loaded = load(args)
    if args.print_config:
        return _print_config(loaded)
    ci = RecordingDialect(kind=ctx.ci.kind, stream=ctx.ci.stream, environ=ctx.ci.environ)
    report_path = Path(loaded.config.report.path) if loaded.config.report.path else None
    if report_path is not None:  # a device, FIFO, folder or missing folder: refused before any step runs
        from cicd_tools.support.outpath import resolve_output

        resolve_output(report_path, what="evidence report")
    with exported(loaded):
        from cicd_tools.cli.main import build_parser

        parser = build_parser()
        flow = Flow(loaded, operations(), ci=ci, report_path=report_path,
                    available=lambda argv: missing_command(parser, argv) is None)
        ci.sink = flow.record_output
        try:
            report = flow.run()
        finally:
            if loaded.config.report.summary:
                ctx.ci.summary(render_markdown(flow.report))
    return Outcome(data=report.model_dump(mode="json"), text=render_markdown(report))
