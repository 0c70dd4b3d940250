"""What a run of ``cicd-tools`` writes around its handler: the logging on stderr, the result rendered, and how
it ends: an error, a usage error or a crash reported (text, or exactly one JSON document on stdout with
``--output json``), a closed pipe (``| head``) ended quietly, an exit code.

``cli/main.py`` imports this module once parsing succeeded (or failed), never for ``--version`` or ``--help``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from cicd_tools import __version__
from cicd_tools.cli.render import JSON_FORMATS, render
from cicd_tools.support.errors import CicdError, ExitCode, Reportable, UsageError

if TYPE_CHECKING:
    from cicd_tools.cli._base import Context, Outcome

INTERNAL_ERROR = 70  # a bug in cicd-tools itself (EX_SOFTWARE); a crash log is written
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader (`| head`) went away

_LINES = "\n"  # what error messages may hold unescaped (they span lines); other control characters are escaped

log = logging.getLogger("cicd_tools")


def setup_logging(verbosity: int, only_errors: bool = False) -> None:
    """One redacting stderr handler; ``verbosity`` 0 (warnings, our INFO progress), 1 (INFO), 2 (DEBUG, SDKs)."""
    from cicd_tools.support.redact import RedactingFilter

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
        # A failed chained credential logs every credential it tried (15 lines) at WARNING; the error we raise
        # carries a two-line summary of the same (azerrors.summarize_auth_failure); -vv shows the original.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    if only_errors:  # --only-show-errors: progress (INFO) and warnings stay out of the log
        root.setLevel(logging.ERROR)
        log.setLevel(logging.ERROR)


def print_outcome(outcome: Outcome, output: str, query: str | None) -> None:
    """The handler's result on stdout, in ``output`` after ``query``."""
    shown = render(outcome.data, outcome.text, output, query)
    if shown:
        sys.stdout.write(shown.rstrip("\n") + "\n")
    sys.stdout.flush()


def print_json(data: dict[str, Any]) -> None:
    """One JSON document on stdout."""
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def report_error(err: Reportable, ctx: Context | None, output: str | None = None, *, document: bool = True) -> int:
    """stderr lines, the JSON error document (``document``: stdout holds no other), a CI annotation."""
    from cicd_tools.ci import CiKind
    from cicd_tools.support.outpath import printable
    from cicd_tools.support.redact import redact

    if output is None:
        output = ctx.output if ctx is not None else "text"
    message = redact(err.message)
    hint = redact(err.hint) if err.hint else ""
    code = f" [{err.code}]" if err.code else ""
    # ESC and other control characters a message may carry (a file name) never reach the terminal raw.
    sys.stderr.write(f"error{code}: {printable(message, keep=_LINES)}\n")
    if hint:
        sys.stderr.write(f"hint: {printable(hint, keep=_LINES)}\n")
    if output in JSON_FORMATS and document:
        print_json({k: (redact(v) if isinstance(v, str) else v) for k, v in err.to_dict().items()})
    if ctx is not None and ctx.ci.kind is not CiKind.PLAIN:
        ctx.ci.annotate("error", f"{message}{(' ' + hint) if hint else ''}", title=type(err).__name__)
    return int(err.exit_code)


def report_usage(message: str, usage: str, output: str) -> int:
    """argparse's usage error: the usage line and the message on stderr (and the JSON document); exit 2."""
    from cicd_tools.support.outpath import printable

    sys.stderr.write(usage)
    sys.stderr.write(f"cicd-tools: error: {printable(message, keep=_LINES)}\n")
    if output in JSON_FORMATS:
        print_json({
            "error": "UsageError",
            "message": message,
            "hint": "Check the command line against `cicd-tools COMMAND --help`.",
            "code": "UsageError",
            "exitCode": int(ExitCode.USAGE),
        })
    return int(ExitCode.USAGE)


def report_crash(exc: BaseException, output: str = "text") -> int:
    import platform
    import tempfile
    import traceback

    from cicd_tools.support.outpath import printable
    from cicd_tools.support.redact import redact

    path: str | None = None
    try:
        fd, path = tempfile.mkstemp(prefix="cicd-tools-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"cicd-tools {__version__}, Python {platform.python_version()}, {platform.platform()}\n")
            fh.write(redact("".join(traceback.format_exception(exc))))
    except OSError:
        path = None
    message = f"{type(exc).__name__}: {redact(str(exc))}"
    hint = (f"this is a bug in cicd-tools; please report it with the crash log {path}" if path
            else "this is a bug in cicd-tools; please report it with the command line you ran (-vv)")
    sys.stderr.write(f"internal error: {printable(message, keep=_LINES)}\nhint: {hint}\n")
    if output in JSON_FORMATS:
        print_json({"error": "InternalError", "message": message, "hint": hint, "code": type(exc).__name__,
                     "crashLog": path, "exitCode": INTERNAL_ERROR})
    return INTERNAL_ERROR


def stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reader has closed it (``cicd-tools ... | head -2``)."""
    try:
        import select

        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True  # not a real file (embedded use): the BrokenPipeError itself is the evidence


def quiet_broken_pipe() -> int:
    """End quietly: point stdout at /dev/null so the interpreter's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    return BROKEN_PIPE


# The OS refusing a path is about the path the user gave (or the folder they run in), not a bug in us.
_PATH_ERRNOS = frozenset({"ENOENT", "EISDIR", "ENOTDIR", "EACCES", "EPERM", "ENAMETOOLONG", "ELOOP", "EEXIST",
                          "EROFS", "ENOSPC", "EDQUOT", "ENXIO"})


def translate_path_error(exc: Exception) -> CicdError | None:
    """A filesystem error naming a path becomes a usage error that names the path and the OS's reason."""
    import errno

    if not isinstance(exc, OSError) or exc.filename is None or exc.errno is None:
        return None
    name = errno.errorcode.get(exc.errno, "")
    if name not in _PATH_ERRNOS:
        return None
    shown = str(exc.filename)
    shown = shown if len(shown) <= 200 else shown[:200] + f"... ({len(shown)} characters)"
    return UsageError(
        f"{exc.strerror or name}: {shown}",
        hint="Check the paths given on the command line and in CICD_* variables (a file where a folder is"
        " expected, a missing folder, permissions).",
        code=name,
    )


def translate_sdk_error(exc: Exception) -> CicdError | None:
    """Map an Azure SDK error that escaped the library to a classified CicdError."""
    module = type(exc).__module__
    if not module.startswith("azure."):
        return None
    from cicd_tools.support.azerrors import classify_azure_error

    return classify_azure_error(exc)
