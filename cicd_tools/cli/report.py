"""``cicd-tools report show|schema``: read an evidence report written by ``flow --report``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cicd_tools.cli._base import Context, Outcome


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("report", help="render or describe the evidence report of `flow`")
    sub = parser.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="render an evidence report for people (Markdown)",
                          description="Exit codes: 0 ok, 2 unreadable file, 5 not an evidence report.")
    show.add_argument("file", type=Path, metavar="FILE", help="the JSON file `flow --report` wrote")
    show.set_defaults(handler=_show)
    schema = sub.add_parser("schema", help="print the report's JSON Schema")
    schema.add_argument("--write", type=Path, metavar="FILE", help="write it to FILE instead of stdout")
    schema.set_defaults(handler=_schema)


def _show(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.report.markdown import render_markdown
    from cicd_tools.report.model import read_report

    report = read_report(args.file)
    return Outcome(data=report.model_dump(mode="json"), text=render_markdown(report))


def _schema(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.report.model import report_json_schema

    schema = report_json_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if args.write:
        from cicd_tools.support.errors import UsageError
        from cicd_tools.support.outpath import printable, write_atomic

        try:
            write_atomic(args.write, text, what="--write file")
        except OSError as exc:
            raise UsageError(f"cannot write --write {printable(str(args.write))}: {exc.strerror or exc}",
                             hint="Name a file in a folder you can write to.") from None
        return Outcome(data={"written": str(args.write)}, text=f"wrote {printable(str(args.write))}")
    return Outcome(data=schema, text=text)
