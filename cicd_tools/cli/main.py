"""The ``cicd-tools`` command line: parses, calls the library, prints results, maps errors to exits.

Start-up matters in CI, so this module and every command module import nothing heavy at the top:
azure SDKs are imported inside the handlers that need them, and only ``code`` handlers import
azure.ai.ml. A run imports only the command module it runs: ``--version`` and ``--help`` import none
(``COMMAND_HELP`` lists the commands), and nothing from ``cicd_tools.sandbox`` is imported unless the
``sandbox`` command runs. ``build_parser()`` without arguments still builds the whole parser (``ci lint``
checks command lines against it, and ``completion`` generates from it, so they import every command module).

Global flags (``--output/-o``, ``--query``, ``--ci``, ``--credential``, ``-v``, ``--debug``,
``--only-show-errors``) are accepted before or after the command, as ``az`` users type them; with
``--output json`` every ending (result, error, usage error, crash) prints exactly one JSON document on stdout.
``cicd-tools help [COMMAND...]`` is ``cicd-tools [COMMAND...] --help``; a mistyped command or flag gets a
"did you mean" suggestion. What a run prints around its handler (logging, the result, errors, crashes) is in
``cli/console.py``, imported once the command line is parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from cicd_tools import __version__
from cicd_tools.cli.help import attach_examples, subparsers_of, suggestion
from cicd_tools.cli.render import JSON_FORMATS, OUTPUT_CHOICES
from cicd_tools.support.errors import CicdError, ExitCode, Interrupted, UsageError

if TYPE_CHECKING:
    from cicd_tools.cli._base import Context, Handler

# Each module exposes ``register(subparsers)`` and is named after its command. Keep this list in the order
# of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "cicd_tools.cli.doctor",
    "cicd_tools.cli.sandbox",
    "cicd_tools.cli.firewall",
    "cicd_tools.cli.storage",
    "cicd_tools.cli.code",
    "cicd_tools.cli.pointer",
    "cicd_tools.cli.adf",
    "cicd_tools.cli.preflight",
    "cicd_tools.cli.aml",
    "cicd_tools.cli.model",
    "cicd_tools.cli.flow",
    "cicd_tools.cli.report",
    "cicd_tools.cli.ci",
    "cicd_tools.cli.completion",
)

# The one-line help of each command, for the command list of ``cicd-tools --help`` without importing every
# module; a unit test keeps it equal to the help each module registers.
COMMAND_HELP: dict[str, str] = {
    "doctor": "check azure.ai.ml imports, marshmallow<4, pins and the credential in use",
    "sandbox": "run the local cloud (Azurite + ARM, identity, firewall and RBAC emulators)",
    "firewall": "open/close a temporary storage IP rule for this agent",
    "storage": "storage data-plane smoke test and account diagnosis",
    "code": "Azure ML code assets: content hash, plan, register",
    "pointer": "publish and read the code-asset pointer (latest.json)",
    "adf": "Azure Data Factory: evaluate expressions, lint, run locally; deploy, diff, run in the factory",
    "preflight": "read-only check of the identity and network chain (CI -> storage -> ADF -> Azure ML -> AKS)",
    "aml": "Azure ML jobs: lint before submission, verify after",
    "model": "Azure ML models: mirror a run's checkpoint as a model version",
    "flow": "the whole chain in one command, with guaranteed cleanup and an evidence report",
    "report": "render or describe the evidence report of `flow`",
    "ci": "check CI pipeline YAML (Azure DevOps, GitHub Actions)",
    "completion": "print a shell completion script (bash or zsh)",
}

# Spelled out so that parsing imports neither cicd_tools.ci nor cicd_tools.credentials; a unit test keeps them
# equal to ("auto", *CiKind) and credentials.MODES.
CI_CHOICES = ("auto", "azure-devops", "github", "plain")
MODES = ("auto", "azure-cli", "workload-identity", "azure-pipelines", "managed-identity", "default")


class UsageExit(SystemExit):
    """argparse found a usage error; ``main`` reports it (text or one JSON document) and exits 2."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(int(ExitCode.USAGE))
        self.message = message
        self.usage = usage


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors reach ``main`` instead of exiting from inside argparse.

    Subparsers inherit the class (``add_subparsers`` uses ``type(self)``), so every level behaves alike.
    A ``SystemExit`` subclass keeps ``parse_args`` usable by code that expects argparse's behaviour.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageExit(message + suggestion(self, message), self.format_usage())


def build_parser(only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command's (no SDK is imported), or, given ``only``, just theirs.

    ``only`` is a set of words (``main`` passes the command line): a command named in it gets its full parser
    from its module; every other command is listed by name and ``COMMAND_HELP`` without importing its module.
    """
    parser = CliParser(
        prog="cicd-tools",
        description=(
            "CI/CD for Azure ML + Data Factory behind private storage. Exit codes: 0 ok, 1 lint findings,"
            " 2 usage/config, 3 Azure call failed, 4 run/job failed, 5 contract violated, 6 timeout,"
            " 130 interrupted, 141 stdout closed early (`| head`), 70 a bug in cicd-tools."
            " Global flags (--output/-o, --ci, --credential, -v) go before or after the command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cicd-tools {__version__}")
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_CHOICES,
        default=None,
        help="text for people; json (jsonc: coloured on a terminal) for machines, one JSON document on stdout; yaml;"
        " table and tsv as az prints them; none prints nothing (the exit code still tells) [env: CICD_OUTPUT]",
    )
    parser.add_argument("--query", default=None,
                        help="JMESPath query applied to the JSON result before rendering, as in az "
                        "(--query \"[0].version\" -o tsv)")
    parser.add_argument(
        "--ci",
        choices=CI_CHOICES,
        default=None,
        help="CI dialect for outputs and annotations; auto reads TF_BUILD / GITHUB_ACTIONS [env: CICD_CI]",
    )
    parser.add_argument(
        "--credential",
        choices=MODES,
        default=None,
        help="which azure-identity credential to use; auto detects the runner (`cicd-tools doctor` says which "
        "and why) [env: CICD_CREDENTIAL, default auto]",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    parser.add_argument("--debug", action="store_true", help="everything, HTTP included, secrets masked (as -vv)")
    parser.add_argument("--only-show-errors", action="store_true",
                        help="no progress or warnings on stderr, only errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded: list[str] = []
    for module in COMMAND_MODULES:
        command = module.rsplit(".", 1)[1]
        if only is None or command in only:
            importlib.import_module(module).register(subparsers)
            loaded.append(command)
        else:  # a placeholder: argparse picks it only when its name is on the command line, and then it is loaded
            subparsers.add_parser(command, help=COMMAND_HELP.get(command), add_help=False)
    if loaded:
        attach_examples(subparsers, loaded)
    for sub in subparsers_of(parser):
        _add_global_flags(sub)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    """Accept the global flags after the command too, unless the command defines a flag of that name.

    They land in their own ``sub_*`` dests with SUPPRESS defaults, so a subcommand never resets what was
    given before the command; ``_global_values`` merges both places. They stay out of the subcommand's
    usage and help (``cicd-tools --help`` documents them) so a usage error stays short.
    """
    taken = parser._option_string_actions
    specs: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("-o", "--output"), {"dest": "sub_output", "choices": OUTPUT_CHOICES}),
        (("--ci",), {"dest": "sub_ci", "choices": CI_CHOICES}),
        (("--credential",), {"dest": "sub_credential", "choices": MODES}),
        (("-v", "--verbose"), {"dest": "sub_verbose", "action": "count"}),
        (("--query",), {"dest": "sub_query"}),
        (("--debug",), {"dest": "sub_debug", "action": "store_true"}),
        (("--only-show-errors",), {"dest": "sub_only_show_errors", "action": "store_true"}),
    ]
    for flags, kwargs in specs:
        free = tuple(flag for flag in flags if flag not in taken)
        if free:
            parser.add_argument(*free, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _global_values(args: argparse.Namespace) -> tuple[str, str, int]:
    """``(output, ci, verbosity)``: after the command > before it > ``CICD_OUTPUT`` / ``CICD_CI`` > defaults.

    Raises: UsageError (an environment default that is not one of the choices).
    """
    output = getattr(args, "sub_output", None) or args.output or os.environ.get("CICD_OUTPUT") or "text"
    ci = getattr(args, "sub_ci", None) or args.ci or os.environ.get("CICD_CI") or "auto"
    if output not in OUTPUT_CHOICES:
        raise UsageError(f"CICD_OUTPUT={output!r} is not one of {', '.join(OUTPUT_CHOICES)}",
                         hint="Set CICD_OUTPUT to one of those values, or pass --output.")
    if ci not in CI_CHOICES:
        raise UsageError(f"CICD_CI={ci!r} is not one of {', '.join(CI_CHOICES)}",
                         hint="Set CICD_CI to one of those values, or pass --ci.")
    verbosity = int(args.verbose or 0) + int(getattr(args, "sub_verbose", 0) or 0)
    if args.debug or getattr(args, "sub_debug", False):
        verbosity = max(verbosity, 2)
    return output, ci, verbosity


def wants_json(argv: Sequence[str]) -> bool:
    """Whether this invocation asked for JSON, read from the raw argv (usable before parsing succeeded)."""
    chosen = os.environ.get("CICD_OUTPUT")
    tokens = list(argv)
    for i, token in enumerate(tokens):
        if token == "--":
            break
        if token in ("-o", "--output") and i + 1 < len(tokens):
            chosen = tokens[i + 1]
        elif token.startswith("--output="):
            chosen = token.partition("=")[2]
        elif token.startswith("-o") and not token.startswith("--") and len(token) > 2:
            chosen = token[2:].lstrip("=")
    return chosen in JSON_FORMATS


def selected_mode(mode: str | None) -> AbstractContextManager[None]:
    """``credentials.selected_mode``, imported once a command runs."""
    from cicd_tools.credentials import selected_mode as select

    return select(mode)


def _raise_interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    raise Interrupted(f"received signal {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cicd-tools`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["help"]:  # `cicd-tools help firewall open` is `cicd-tools firewall open --help`
        argv = [*argv[1:], "--help"]
    output = "json" if wants_json(argv) else "text"
    with _guarded_streams():
        try:
            return _run(argv, output)
        except BrokenPipeError:
            from cicd_tools.cli.console import quiet_broken_pipe, report_crash, stdout_reader_gone

            if stdout_reader_gone():
                return quiet_broken_pipe()
            return report_crash(sys.exc_info()[1] or BrokenPipeError(), output)


@contextlib.contextmanager
def _guarded_streams() -> Iterator[None]:
    """stdout/stderr that are not terminals (CI logs) carry no logging command but our own (see cisafe)."""
    from cicd_tools.support.cisafe import GuardedStream

    saved = sys.stdout, sys.stderr
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            tty = False
        if not tty and not isinstance(stream, GuardedStream):
            setattr(sys, name, GuardedStream(stream))
    try:
        yield
    finally:
        for guarded in (sys.stdout, sys.stderr):
            if isinstance(guarded, GuardedStream):
                with contextlib.suppress(OSError, ValueError):
                    guarded.flush()
        sys.stdout, sys.stderr = saved


def _run(argv: list[str], output: str) -> int:
    parser = build_parser(only=frozenset(argv))
    try:
        args = parser.parse_args(argv)
    except UsageExit as exc:
        from cicd_tools.cli.console import report_usage

        return report_usage(exc.message, exc.usage, output)
    from cicd_tools.cli.console import (
        print_json,
        print_outcome,
        report_crash,
        report_error,
        setup_logging,
        stdout_reader_gone,
        translate_path_error,
        translate_sdk_error,
    )

    ctx: Context | None = None
    try:
        output, ci, verbosity = _global_values(args)
    except UsageError as err:
        return report_error(err, None, output)
    only_errors = bool(args.only_show_errors or getattr(args, "sub_only_show_errors", False))
    setup_logging(verbosity, only_errors)
    query: str | None = getattr(args, "sub_query", None) or args.query
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        if output in JSON_FORMATS:
            print_json({"error": "UsageError", "message": "no command given", "hint": "See `cicd-tools --help`.",
                         "code": "UsageError", "exitCode": int(ExitCode.USAGE)})
        return int(ExitCode.USAGE)
    args.output, args.ci, args.verbose = output, ci, verbosity
    args.credential = getattr(args, "sub_credential", None) or args.credential
    previous: dict[int, Any] = {}
    for sig in (int(signal.SIGTERM), int(signal.SIGINT)):
        try:
            previous[sig] = signal.signal(sig, _raise_interrupted)
        except ValueError:  # not in the main thread (embedded use)
            break
    from cicd_tools.ci import CiDialect
    from cicd_tools.cli._base import Context, resolve_args

    try:
        # Handlers see text (prose for people) or json (a structured result that every other format renders).
        ctx = Context(output="text" if output == "text" and query is None else "json", ci=CiDialect.create(ci),
                      full_parser=build_parser)
        resolve_args(args)  # flag > CICD_* > config file > default, each value with its source
        with selected_mode(args.credential):
            outcome = handler(args, ctx)
        print_outcome(outcome, output, query)
        if outcome.error is not None:
            # A later step failed after the result was produced: the result is out first, then the error.
            return max(outcome.exit_code, report_error(outcome.error, ctx, output, document=False))
        return outcome.exit_code
    except CicdError as err:
        return report_error(err, ctx, output)
    except Interrupted as err:  # a BaseException: nothing below the boundary may swallow a cancel
        return report_error(err, ctx, output)
    except KeyboardInterrupt:
        return report_error(Interrupted("interrupted by the user (SIGINT)"), ctx, output)
    except BrokenPipeError:
        if stdout_reader_gone():
            raise
        return report_crash(sys.exc_info()[1] or BrokenPipeError(), output)
    except Exception as exc:  # the boundary: never let a raw traceback reach the user
        translated = translate_sdk_error(exc) or translate_path_error(exc)
        if translated is not None:
            return report_error(translated, ctx, output)
        return report_crash(exc, output)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def entry() -> NoReturn:
    """The console script: ``main``, then an exit that does not wait for threads a cancelled SDK call left behind.

    After SIGTERM/SIGINT everything that matters is done when ``main`` returns 130 (evidence written, the rule
    closed, runs cancelled); what may still run are SDK worker threads (azure-ai-ml's upload pool is not a daemon
    and the interpreter would join it: seconds to minutes), so the process ends at once. Other exits are normal.
    """
    code = main()
    if code == int(ExitCode.INTERRUPTED):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
