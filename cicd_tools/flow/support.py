"""What the flow needs around its steps: the errors it adds, signals held during cleanup, outputs as evidence."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cicd_tools.ci import CiDialect
from cicd_tools.support.errors import CicdError, ExitCode, UsageError


class StepNotAvailable(UsageError):
    """A configured step needs a command this build of cicd-tools does not have."""

    default_hint = "Skip the step (--skip STEP, or `enabled = false` in its section), or upgrade cicd-tools."


class StepFailed(CicdError):
    """A step's command reported failure through its exit code (its own output says why)."""

    def __init__(self, message: str, exit_code: int, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, code=code)
        try:
            self.exit_code = ExitCode(exit_code)
        except ValueError:
            self.exit_code = ExitCode.AZURE


def utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class RecordingDialect(CiDialect):
    """A CI dialect that also hands every (non-secret) output to ``sink``: outputs become evidence."""

    sink: Callable[[str, str], None] | None = None

    def set_output(self, name: str, value: str, *, secret: bool = False) -> None:
        super().set_output(name, value, secret=secret)
        if self.sink is not None and not secret:
            self.sink(name, value)


@dataclass
class Held:
    received: list[int] = field(default_factory=list)


@contextlib.contextmanager
def signals_held() -> Iterator[Held]:
    """Hold SIGINT/SIGTERM while cleanup runs; the caller re-raises ``Interrupted`` afterwards."""
    held = Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: held.received.append(signum))
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
