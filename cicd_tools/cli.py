"""The ``cicd-tools`` command line: parses, calls the library, prints results, maps errors to exits.

Start-up matters in CI, so this module and every command module import nothing heavy at the top:
azure SDKs are imported inside the handlers that need them, and only ``code`` handlers import
azure.ai.ml.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from cicd_tools import __version__
from cicd_tools.ci import CiDialect, CiKind
from cicd_tools.commands._base import Context, Handler, Outcome
from cicd_tools.errors import CicdError, ExitCode, Interrupted, Reportable
from cicd_tools.redact import RedactingFilter, redact

# Each module exposes ``register(subparsers)``. Keep this list in the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "cicd_tools.commands.doctor",
    "cicd_tools.commands.sandbox",
    "cicd_tools.commands.firewall",
    "cicd_tools.commands.storage",
    "cicd_tools.commands.code",
    "cicd_tools.commands.pointer",
    "cicd_tools.commands.adf",
)

INTERNAL_ERROR = 70  # a bug in cicd-tools itself (EX_SOFTWARE); a crash log is written

log = logging.getLogger("cicd_tools")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (cheap: no SDK is imported)."""
    parser = argparse.ArgumentParser(
        prog="cicd-tools",
        description=(
            "CI/CD for Azure ML + Data Factory behind private storage. Exit codes: 0 ok, 1 lint findings,"
            " 2 usage/config, 3 Azure call failed, 4 run/job failed, 5 contract violated, 6 timeout,"
            " 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cicd-tools {__version__}")
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default=os.environ.get("CICD_OUTPUT", "text"),
        help="text for people, json for machines: one JSON document on stdout [env: CICD_OUTPUT]",
    )
    parser.add_argument(
        "--ci",
        choices=("auto", *(k.value for k in CiKind)),
        default=os.environ.get("CICD_CI", "auto"),
        help="CI dialect for outputs and annotations; auto reads TF_BUILD / GITHUB_ACTIONS [env: CICD_CI]",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)
    # Our own progress lines are INFO; keep them visible by default, keep the SDKs quiet.
    log.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    if verbosity < 2:
        logging.getLogger("azure").setLevel(logging.WARNING)


def _raise_interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    raise Interrupted(f"received signal {signal.Signals(signum).name}")


def _print_outcome(outcome: Outcome, ctx: Context) -> None:
    if ctx.output == "json":
        sys.stdout.write(json.dumps(outcome.data, indent=2, sort_keys=False, default=str) + "\n")
    elif outcome.text:
        sys.stdout.write(outcome.text.rstrip("\n") + "\n")
    sys.stdout.flush()


def _report_error(err: Reportable, ctx: Context | None) -> int:
    message = redact(err.message)
    hint = redact(err.hint) if err.hint else ""
    code = f" [{err.code}]" if err.code else ""
    sys.stderr.write(f"error{code}: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    if ctx is not None:
        if ctx.output == "json":
            data = {k: (redact(v) if isinstance(v, str) else v) for k, v in err.to_dict().items()}
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        if ctx.ci.kind is not CiKind.PLAIN:
            ctx.ci.annotate("error", f"{message}{(' ' + hint) if hint else ''}", title=type(err).__name__)
    return int(err.exit_code)


def _report_crash(exc: BaseException) -> int:
    fd, path = tempfile.mkstemp(prefix="cicd-tools-crash-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"cicd-tools {__version__}, Python {platform.python_version()}, {platform.platform()}\n")
        fh.write(redact("".join(traceback.format_exception(exc))))
    sys.stderr.write(
        f"internal error: {type(exc).__name__}: {redact(str(exc))}\n"
        f"hint: this is a bug in cicd-tools; please report it with the crash log {path}\n"
    )
    return INTERNAL_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cicd-tools`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return int(ExitCode.USAGE)
    ctx: Context | None = None
    previous: dict[int, Any] = {}
    for sig in (int(signal.SIGTERM), int(signal.SIGINT)):
        try:
            previous[sig] = signal.signal(sig, _raise_interrupted)
        except ValueError:  # not in the main thread (embedded use)
            break
    try:
        ctx = Context(output=args.output, ci=CiDialect.create(args.ci))
        outcome = handler(args, ctx)
        _print_outcome(outcome, ctx)
        return outcome.exit_code
    except CicdError as err:
        return _report_error(err, ctx)
    except Interrupted as err:  # a BaseException: nothing below the boundary may swallow a cancel
        return _report_error(err, ctx)
    except KeyboardInterrupt:
        return _report_error(Interrupted("interrupted by the user (SIGINT)"), ctx)
    except Exception as exc:  # the boundary: never let a raw traceback reach the user
        translated = _translate_sdk_error(exc)
        if translated is not None:
            return _report_error(translated, ctx)
        return _report_crash(exc)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _translate_sdk_error(exc: Exception) -> CicdError | None:
    """Map an Azure SDK error that escaped the library to a classified CicdError."""
    module = type(exc).__module__
    if not module.startswith("azure."):
        return None
    from cicd_tools.azerrors import classify_azure_error

    return classify_azure_error(exc)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
