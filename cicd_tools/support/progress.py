"""Progress of long work: throttled INFO lines on stderr, through logging, saying what is awaited and for how long.

A CI log that stays silent for a minute looks hung. Modules say what they wait for with ``Progress``
(their own loops: ``update`` as work advances) or ``heartbeat`` (an opaque SDK call: a line every
``interval`` seconds from a timer thread), and ``retry_line`` words a retry the same way everywhere
(what, why, the next wait). Lines go through the module's logger, so ``RedactingFilter`` applies and
``cli.py`` decides where they go; no escape codes are ever written.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

DEFAULT_INTERVAL = 10.0  # seconds between lines of one piece of work, except the first and the last


def human_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``: sizes as a person reads them in a log."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop returns


def retry_line(what: str, why: str, attempt: int, next_wait: float, attempts: int | None = None) -> str:
    """One retry, worded alike everywhere: ``what: why; retry 2/5 in 4.0 s``."""
    of = f"/{attempts}" if attempts else ""
    return f"{what}: {why}; retry {attempt}{of} in {next_wait:.1f} s"


class Progress:
    """One piece of long work. ``update`` logs at most every ``interval`` seconds; ``done`` always logs."""

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger,
        total_items: int | None = None,
        total_bytes: int | None = None,
        unit: str = "files",
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.log, self.unit = what, logger, unit
        self.total_items, self.total_bytes = total_items, total_bytes
        self.items = 0
        self.bytes = 0
        self.status: str | None = None
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._last: float | None = None
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def describe(self) -> str:
        """``what: 3/10 files, 1.0 MiB of 4.0 MiB, last status 503, 12.3 s elapsed``."""
        parts = []
        if self.total_items is not None or self.items:
            total = f"/{self.total_items}" if self.total_items is not None else ""
            parts.append(f"{self.items}{total} {self.unit}")
        if self.total_bytes is not None or self.bytes:
            total = f" of {human_bytes(self.total_bytes)}" if self.total_bytes is not None else ""
            parts.append(f"{human_bytes(self.bytes)}{total}")
        if self.status:
            parts.append(self.status)
        parts.append(f"{self.elapsed():.1f} s elapsed")
        return f"{self.what}: {', '.join(parts)}"

    def start(self) -> None:
        """Say that the work begins (always logged)."""
        self._emit(force=True)

    def update(self, *, items: int = 0, nbytes: int = 0, status: str | None = None, force: bool = False) -> None:
        """Add finished items/bytes, note the latest status; log when ``interval`` has passed since the last line."""
        with self._lock:
            self.items += items
            self.bytes += nbytes
            if status is not None:
                self.status = status
        self._emit(force=force)

    def done(self, status: str = "done", *, complete: bool = False) -> None:
        """Close the work with a final line (always logged). ``complete``: the work is known to be whole (an opaque
        call returned), so the line counts every item and byte rather than the none it could not observe."""
        with self._lock:
            self.status = status
            if complete:
                self.items = self.total_items if self.total_items is not None else self.items
                self.bytes = self.total_bytes if self.total_bytes is not None else self.bytes
        self._emit(force=True)

    def _emit(self, *, force: bool) -> None:
        now = self.clock()
        with self._lock:
            if not force and self._last is not None and now - self._last < self.interval:
                return
            self._last = now
            line = self.describe()
        self.log.info("%s", line)


@contextlib.contextmanager
def heartbeat(
    what: str,
    *,
    logger: logging.Logger,
    interval: float = DEFAULT_INTERVAL,
    total_items: int | None = None,
    total_bytes: int | None = None,
) -> Iterator[Progress]:
    """Around a call we cannot observe (an SDK upload): a start line, a line every ``interval`` s, an end line."""
    progress = Progress(what, logger=logger, total_items=total_items, total_bytes=total_bytes, interval=interval)
    progress.start()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(interval):
            progress.update(status="still waiting", force=True)

    ticker = threading.Thread(target=tick, name=f"progress: {what}", daemon=True)
    ticker.start()
    try:
        yield progress
    except BaseException:
        stop.set()
        ticker.join()
        progress.done("failed")
        raise
    stop.set()
    ticker.join()
    progress.done(complete=True)  # the call returned: all of it is done, not the 0 we could not watch
