"""One deadline per command, and calls that cannot outlive it.

``--timeout`` must be a bound, not a hint: an ARM call, the token fetch hidden inside it (azure-identity's
credential runs in the SDK's pipeline), a data-plane probe or an IP echo can each hang for minutes on
their own transport defaults. ``bounded_call`` runs such a call on a daemon worker thread and waits at
most the time left: the caller gets control back on time (and a signal handler still runs in the main
thread, so a cancel is never stuck behind a socket). An abandoned call keeps running in the background;
for a PATCH that means "sent, may still land", which the caller must treat as such.

The deadline also remembers the last status it was told about, so a timeout names what was actually
seen (403 vs 503 vs 429 vs no answer) instead of guessing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from cicd_tools.support.errors import TimeoutExpired

T = TypeVar("T")

TIMEOUT_HINT = (
    "Raise --timeout. A failed open removes what it added (a watcher keeps removing a PATCH that may still"
    " land); a failed close leaves an expiring lease for `cicd-tools firewall sweep`."
)


class CallTimedOut(TimeoutError):
    """A bounded call did not answer within the time left (it may still complete in the background)."""

    def __init__(self, what: str, waited: float) -> None:
        super().__init__(f"{what}: no answer within {waited:.1f} s")
        self.what = what
        self.waited = waited


class Deadline:
    """The end of a command's time budget on a monotonic clock, plus the last status seen."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self.end = self.started + seconds
        self.last_seen: str | None = None
        self.attempts = 0

    def remaining(self) -> float:
        return self.end - self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def expired(self) -> bool:
        return self.remaining() <= 0

    def saw(self, status: str) -> None:
        """Record the latest answer (``403 AuthorizationFailure``, ``503 ServerBusy``, ``no answer in 4 s``)."""
        self.last_seen = status

    def expire(self, what: str, *, hint: str = TIMEOUT_HINT) -> TimeoutExpired:
        """The TimeoutExpired to raise: what we waited for, and the last status actually seen."""
        seen = f"; last seen: {self.last_seen}" if self.last_seen else ""
        return TimeoutExpired(
            f"gave up after {self.elapsed():.1f} s (--timeout {self.seconds:.0f} s): {what}{seen}",
            hint=hint,
            code="Timeout",
        )


def bounded_call(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()`` if it returns within ``timeout`` seconds; its exception if it raises. Raises: CallTimedOut.

    Runs on a daemon thread; the wait in the calling thread is interruptible by signals.
    """
    if timeout <= 0:
        raise CallTimedOut(what, 0.0)
    box: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()

    def run() -> None:
        try:
            box.put((True, fn()))
        except BaseException as exc:  # handed to the caller, re-raised there
            box.put((False, exc))

    threading.Thread(target=run, name=f"bounded: {what[:40]}", daemon=True).start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise CallTimedOut(what, timeout) from None
    if ok:
        return value  # type: ignore[return-value]
    assert isinstance(value, BaseException)
    raise value


def within(deadline: Deadline, what: str, fn: Callable[[], T]) -> T:
    """``fn()`` bounded by the time ``deadline`` has left. Raises: TimeoutExpired (exit 6) naming ``what``.

    For calls with retries of their own (the storage SDK's): the command's deadline still holds.
    """
    try:
        return bounded_call(fn, deadline.remaining(), what)
    except CallTimedOut:
        deadline.saw(f"no answer from {what}")
        raise deadline.expire(what, hint="Raise --timeout, or check the service's health.") from None
