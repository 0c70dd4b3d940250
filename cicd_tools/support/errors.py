"""One exception tree for cicd-tools: every class carries an exit code and a hint for the user.

Only ``cli.py`` turns these into process exits. Library code raises them (or lets the CLI wrap
unexpected third-party errors); it never prints and never calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes, as documented in docs/exit-codes.md (a test keeps the two equal)."""

    OK = 0
    FINDINGS = 1  # a linter found problems at or above --fail-on
    USAGE = 2  # bad flags, bad configuration, a broken environment
    AZURE = 3  # an Azure call failed (with the classified cause)
    RUN_FAILED = 4  # an ADF run or an AML job failed
    CONTRACT = 5  # a contract was violated (pointer, version mismatch)
    TIMEOUT = 6  # a bounded wait ran out
    INTERRUPTED = 130  # SIGINT / SIGTERM


class Reportable:
    """What the CLI reports for a failure: message, hint, machine code, exit code (shared by both bases)."""

    exit_code: ExitCode = ExitCode.AZURE
    default_hint: str = ""
    message: str
    hint: str
    code: str | None

    def _init_report(self, message: str, hint: str | None, code: str | None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        # An Azure error code (``AuthorizationFailure``) or a toolkit reason, for machines.
        self.code = code

    def to_dict(self) -> dict[str, object]:
        """The error as the JSON document ``--output json`` prints."""
        doc: dict[str, object] = {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "code": self.code,
            "exitCode": int(self.exit_code),
        }
        extra = getattr(self, "details", None)  # what cleanup did (e.g. ``cancel``), set by the raiser
        if isinstance(extra, dict):
            doc.update({k: v for k, v in extra.items() if k not in doc})
        return doc


class CicdError(Reportable, Exception):
    """Base of every error the toolkit reports to a user."""

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self._init_report(message, hint, code)


class UsageError(CicdError):
    """A flag, a setting or an input file is wrong; nothing was changed in Azure."""

    exit_code = ExitCode.USAGE
    default_hint = "Check the command line against `cicd-tools COMMAND --help`."


class ConfigError(UsageError):
    """Required configuration (subscription, account, workspace...) is missing or inconsistent."""

    default_hint = "Pass the flag, or set the CICD_* variable named in `--help`."


class EnvironmentProblem(UsageError):
    """The Python environment cannot run the command (a broken or incompatible install)."""

    default_hint = "Run `cicd-tools doctor` and apply the pip command it prints."


class AzureError(CicdError):
    """An Azure call failed; ``code`` holds Azure's error code when there is one."""

    exit_code = ExitCode.AZURE
    default_hint = "Read the Azure error code above; `cicd-tools storage diagnose` explains most storage ones."


class NetworkDenied(AzureError):
    """The storage firewall refused the request (403 AuthorizationFailure)."""

    default_hint = (
        "Open a rule for this agent with `cicd-tools firewall open`, or wait for a new rule to propagate."
    )


class PermissionMissing(AzureError):
    """The caller's principal lacks a data-plane role (403 AuthorizationPermissionMismatch)."""

    default_hint = "Assign 'Storage Blob Data Contributor' on the account to the identity the pipeline uses."


class AuthenticationFailed(AzureError):
    """The credential was refused or could not produce a token."""

    default_hint = ("Check the service connection / federated credential; `cicd-tools doctor --online` says which"
                    " credential answers.")


class Throttled(AzureError):
    """Azure kept answering 429/5xx beyond the retry budget."""

    default_hint = (
        "Re-run the step in a few minutes; if it keeps happening, another pipeline may be hammering the same"
        " account: stagger the pipelines."
    )
    retry_after: float | None = None  # seconds Azure asked us to wait (Retry-After), when it said


class RunFailed(CicdError):
    """An ADF pipeline run or an Azure ML job ended in failure."""

    exit_code = ExitCode.RUN_FAILED
    default_hint = "Read the failing activity's error above; `adf run --wait` lists every activity run."


class ContractViolation(CicdError):
    """A published contract (the pointer, a registered version) is missing, malformed or inconsistent."""

    exit_code = ExitCode.CONTRACT
    default_hint = "Republish the pointer with `cicd-tools code register --pointer` or `pointer rollback`."


class ConflictError(ContractViolation):
    """A concurrent writer kept winning the compare-and-swap beyond the retry budget."""

    default_hint = "Another pipeline is publishing the same asset; re-run, or serialise the publishing stage."


class TimeoutExpired(CicdError):
    """A bounded wait ran out before the condition held."""

    exit_code = ExitCode.TIMEOUT
    default_hint = "Raise --timeout, or check why the condition never held (diagnose command)."


class Interrupted(Reportable, BaseException):
    """The run was cancelled (SIGINT/SIGTERM).

    A ``BaseException`` like ``KeyboardInterrupt``: the broad ``except Exception`` handlers inside the
    Azure SDKs (azure-identity's credential chain, retry policies) and our own probes must not swallow a
    cancel. Only ``cli.py`` catches it (exit 130); cleanup code catches ``BaseException`` and re-raises.
    """

    exit_code = ExitCode.INTERRUPTED
    default_hint = "The job was cancelled; cleanup ran as reported above."

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self._init_report(message, hint, code)
