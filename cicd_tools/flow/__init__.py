"""``cicd-tools flow``: the whole chain in one command, with guaranteed cleanup and evidence after every step.

firewall open → storage smoke → code register → pointer write → adf run --wait → aml verify → firewall close.
Each step calls the same typed operation the documented command calls (``FlowOperations``), with requests built
from the resolved configuration, and records its typed result as evidence; tests hand the flow fake operations
to check the orchestration. The report is rewritten after every step (and the moment an operation reports a
fact: a run id, a registration, a rollback), before any later failure is reported; the close step runs on every
exit (failure, SIGTERM, SIGINT) with further signals held until it is done.

The rule closes early: nothing after the pointers needs the agent's way into the storage account (the factory reads
the pointer through its own managed private endpoint; verify reads ARM), so when the model mirror is not configured
(its upload runs from the agent), the close starts right after the pointer step, in a thread beside the ADF wait,
and is joined before the flow ends. The close watch (``CICD_FIREWALL_GRACE``) then costs no wall time, and the rule
is open for the first half only. With the mirror configured the close runs last, as before.

A cancelled flow (SIGTERM/SIGINT) exits within 2 s: its close leaves the watch to the detached release watcher,
and a close still going ``HANDOFF_AFTER`` seconds after the cancel (a held PATCH, the early close's watch) is
handed to that watcher whole, the report's close step saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from cicd_tools import __version__
from cicd_tools.ci import CiDialect, run_provenance
from cicd_tools.flow.operations import AzureOperations, FlowOperations
from cicd_tools.flow.run_steps import RunStepsMixin
from cicd_tools.flow.steps import EXPECTED_CODE_IDS
from cicd_tools.flow.support import (
    Held,
    RecordingDialect,
    StepFailed,
    StepNotAvailable,
    signals_held,
    utc_now,
)
from cicd_tools.report.model import ErrorInfo, EvidenceReport, StepRecord, write_report
from cicd_tools.settings.config import LoadedConfig, check_ready
from cicd_tools.support.errors import (
    CicdError,
    ConfigError,
    ExitCode,
    Interrupted,
)
from cicd_tools.support.outpath import OutputRefused, printable

__all__ = ["AzureOperations", "Flow", "FlowOperations", "RecordingDialect", "StepFailed", "StepNotAvailable",
           "signals_held"]

log = logging.getLogger(__name__)

HANDOFF_AFTER = 0.5  # seconds a cancelled flow waits for its close before the release watcher takes it over


class Flow(RunStepsMixin):
    """One run of the chain. ``run()`` returns the report or raises the first failure (after cleanup)."""

    MAIN_STEPS = ("firewall-open", "smoke", "register", "pointers", "adf-run", "aml-verify", "model-mirror")
    COMMANDS: ClassVar[dict[str, tuple[str, str]]] = {
        "firewall-open": ("firewall", "open"), "smoke": ("storage", "smoke"), "register": ("code", "register"),
        "pointers": ("pointer", "write"), "adf-run": ("adf", "run"), "aml-verify": ("aml", "verify"),
        "model-mirror": ("model", "mirror"),
        "firewall-close": ("firewall", "close")}

    def __init__(
        self,
        loaded: LoadedConfig,
        ops: FlowOperations,
        *,
        ci: CiDialect | None = None,
        report_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = utc_now,
        available: Callable[[list[str]], bool] | None = None,
    ) -> None:
        from cicd_tools.storage.lease_tags import default_lease_id, validate_lease_id

        env = os.environ if environ is None else environ
        self.env = env
        self.cfg = loaded.config
        self.loaded = loaded  # the sources of its values: a refusal of two related settings names them truly
        self.ops = ops
        self._lock = threading.RLock()  # registrations are recorded from the upload threads
        self.ci = ci
        self.clock, self.now = clock, now
        self.report_path = report_path
        self.report = EvidenceReport(
            tool=f"cicd-tools {__version__}", startedAtUtc=now(),
            configFile=str(loaded.file) if loaded.file else None, provenance=run_provenance(env),
        )
        lease = self.cfg.firewall.lease_id
        self.lease_id = validate_lease_id(lease) if lease else default_lease_id(env)
        self.open_attempted = False
        self.save_error: OSError | OutputRefused | None = None
        self.available = available
        self._closer: threading.Thread | None = None
        self._close_error: BaseException | None = None
        self.interrupted = False  # the flow was cancelled: its close hands the watch (or a held PATCH) off
        check_ready(loaded, env)

    # --- the orchestration ------------------------------------------------------------------------------

    def _refuse_unavailable(self) -> None:
        """A configured step this build cannot run stops the flow before anything changes in Azure."""
        if self.available is None:
            return
        missing = [s for s, argv in self.COMMANDS.items()
                   if self.cfg.step_enabled(s) and not self.available(list(argv))]
        if not missing:
            return
        for name in (*self.MAIN_STEPS, "firewall-close"):
            status = "not-available" if name in missing else "not-run"
            note = f"`cicd-tools {' '.join(self.COMMANDS[name])}` is not in this build" if name in missing else None
            self.report.steps.append(StepRecord(name=name, status=status, note=note))
        error = StepNotAvailable(
            f"steps {', '.join(missing)} are not available in this build of cicd-tools; nothing was run",
            hint=f"Skip them ({' '.join('--skip ' + m for m in missing)}) or upgrade cicd-tools.")
        self._finish(error, incomplete=True)
        raise error

    def _refuse_unready(self) -> None:
        """What the configuration names is read (never changed) first: a flow that cannot finish stops here,
        before the firewall opens or a pointer moves."""
        from cicd_tools.flow.readiness import problems

        request = self._readiness_request()
        if request.factory is None and request.workspace_id is None:
            return
        errors: list[CicdError]
        try:
            found = self.ops.published(request)
        except CicdError as err:  # ARM could not be asked (auth, network): nothing was changed either
            errors = [err]
        else:
            pinned = EXPECTED_CODE_IDS if self.cfg.step_enabled("register") else None
            errors = list(problems(self.cfg, found, pinned=pinned))
        if not errors:
            return
        for name in (*self.MAIN_STEPS, "firewall-close"):
            self.report.steps.append(StepRecord(name=name, status="not-run", note="refused before any change"))
        for extra in errors[1:]:
            log.error("%s (%s)", extra.message, extra.hint)
        first = errors[0]
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more problem(s) logged above)"
        self._finish(first, incomplete=False)
        raise first

    def run(self) -> EvidenceReport:
        self._refuse_unavailable()
        self._refuse_unready()
        steps: dict[str, Callable[[StepRecord], None]] = {
            "firewall-open": self._open, "smoke": self._smoke, "register": self._register,
            "pointers": self._pointers, "adf-run": self._adf_run, "aml-verify": self._verify,
            "model-mirror": self._mirror,
        }
        failure: BaseException | None = None
        try:
            for name in self.MAIN_STEPS:
                self._step(name, steps[name])
                if name == "pointers" and self.closes_early():
                    log.info("the pointers are written: closing the firewall rule now (nothing later needs it"
                             " from this agent)")
                    self._start_close(early=True)
        except BaseException as exc:  # KeyboardInterrupt and Interrupted too: cleanup comes first
            failure = exc
        self.interrupted = isinstance(failure, (Interrupted, KeyboardInterrupt))
        done = {s.name for s in self.report.steps}
        for name in self.MAIN_STEPS:
            if name not in done:
                self.report.steps.append(StepRecord(name=name, status="not-run"))
        close_error: BaseException | None = None
        with signals_held() as held:
            if self._closer is None and self.open_attempted and self.cfg.step_enabled("firewall-close"):
                self._start_close(early=False)
            if self._closer is not None:
                close_error = self._await_close(held)
            else:
                try:
                    self._step("firewall-close", self._close)  # recorded as skipped
                except BaseException as exc:
                    close_error = exc
        if held.received and failure is None:
            failure = Interrupted(f"received signal {signal.Signals(held.received[0]).name} during cleanup")
        if failure is not None and close_error is not None:
            log.error("FIREWALL RULE MAY REMAIN: closing failed (%s: %s) after the flow failed; run `cicd-tools"
                      " firewall close` or `cicd-tools firewall sweep`.", type(close_error).__name__, close_error)
        error = failure or close_error
        missing = [s.name for s in self.report.steps if s.status == "not-available"]
        if error is None and missing:
            error = StepNotAvailable(
                f"steps {', '.join(missing)} are not available in this build of cicd-tools; nothing else failed",
                hint=f"Skip them ({' '.join('--skip ' + m for m in missing)}) or upgrade cicd-tools.",
            )
        self._finish(error, incomplete=bool(missing))
        if error is None and self.save_error is not None:
            error = ConfigError(f"the evidence report could not be written to {printable(str(self.report_path))}:"
                                f" {self.save_error}",
                                hint="Point --report / CICD_REPORT at a writable folder; every step ran.")
        if error is not None:
            raise error
        return self.report

    def closes_early(self) -> bool:
        """Whether the rule closes right after the pointers (no later step needs the agent's data-plane access)."""
        # verify holds jobs to this flow's registrations without reading the pointer account; without a register
        # step it reads the pointers' history, and the model mirror uploads from the agent: both need the rule
        return (self.open_attempted and self.cfg.step_enabled("firewall-close")
                and not self.cfg.step_enabled("model-mirror")
                and (self.cfg.step_enabled("register") or not self.cfg.step_enabled("aml-verify")))

    def _start_close(self, *, early: bool) -> None:
        """Close the rule in a thread; ``run`` waits for it with signals held, and hands it off when cancelled.

        Early (right after the pointers), the ADF run and verify go on beside it. A signal reaches the main thread
        only: the close keeps going (it is the cleanup) until the flow is cancelled and the close is still not done
        ``HANDOFF_AFTER`` seconds later; then the detached release watcher finishes it (``_await_close``).
        """
        def close() -> None:
            try:
                # a step running beside another (the early close) does not open a CI log group inside the other's
                self._step("firewall-close", self._close, group=not early)
            except BaseException as exc:  # reported by run() after the wait, like a close in the main thread
                self._close_error = exc

        self._closer = threading.Thread(target=close, name="cicd-tools-firewall-close", daemon=True)
        self._closer.start()

    def _await_close(self, held: Held) -> BaseException | None:
        """Wait for the close; once the flow is cancelled (before or during this wait), for ``HANDOFF_AFTER``
        seconds at most: a held PATCH or the close watch is then handed to the release watcher, and the flow
        exits at once (the issue's bound: exit 130 within 2 s of the signal)."""
        closer = self._closer
        assert closer is not None
        cancelled = time.monotonic() if self.interrupted else None
        if closer.is_alive() and cancelled is None:
            log.info("waiting for the firewall close to finish (its watch: a stale PATCH may bring the rule back)")
        while closer.is_alive():
            closer.join(0.05)
            if cancelled is None and held.received:
                cancelled = time.monotonic()
            if cancelled is not None and closer.is_alive() and time.monotonic() - cancelled >= HANDOFF_AFTER:
                self._hand_off_close()
                return None
        return self._close_error

    def _hand_off_close(self) -> None:
        """The cancelled flow does not wait for its close: the detached release watcher removes the rule and tag
        (if the close's PATCH has not) and keeps removing them for the grace window. A close whose removal had
        landed (only its watch is cut short) stays ``ok``; one cut before that is ``interrupted``."""
        removed = False
        try:
            handed = self.ops.firewall_hand_off(self._close_request(), self.lease_id)
        except Exception as exc:  # the rule may remain: say what closes it
            note = (f"cancelled while closing, and the release watcher could not start ({type(exc).__name__}:"
                    f" {exc}); run `cicd-tools firewall close` or `cicd-tools firewall sweep`")
            log.error("FIREWALL RULE MAY REMAIN: %s", note)
        else:
            removed = bool(handed) and all(done for _, done in handed)
            note = (f"cancelled while closing (lease {self.lease_id}): {'; '.join(line for line, _ in handed)} for"
                    " the grace window" if handed else
                    f"cancelled while closing; the state file records no lease {self.lease_id}")
            log.warning("%s", note)
        with self._lock:
            rec = next((s for s in self.report.steps if s.name == "firewall-close"), None)
            if rec is not None and rec.status == "running":
                rec.note = note
                if removed:
                    rec.status = "ok"
                else:
                    rec.status = "interrupted"
                    rec.error = ErrorInfo.from_error(Interrupted("the close was handed to the release watcher"))
            if self.report.firewall is not None:
                self.report.firewall.closeNote = note
                self.report.firewall.closed = self.report.firewall.closed or removed
        self._save()

    def _finish(self, error: BaseException | None, *, incomplete: bool) -> None:
        self.report.finishedAtUtc = self.now()
        info = ErrorInfo.from_error(error) if error is not None else None
        if info is None:
            self.report.status, self.report.exitCode = "succeeded", 0
        elif info.exitCode == int(ExitCode.INTERRUPTED):
            self.report.status, self.report.exitCode = "interrupted", info.exitCode
        else:
            self.report.status = "incomplete" if incomplete and isinstance(error, StepNotAvailable) else "failed"
            self.report.exitCode = info.exitCode
        if self.report_path is not None:
            self.set_output("evidenceReport", str(self.report_path))
        self._save()

    def _step(self, name: str, body: Callable[[StepRecord], None], *, group: bool = True) -> None:
        if not self.cfg.step_enabled(name) or (name == "firewall-close" and not self.open_attempted):
            why = "firewall-open did not run" if self.cfg.step_enabled(name) else "disabled by configuration"
            self.report.steps.append(StepRecord(name=name, status="skipped", note=why))
            self._save()
            return
        rec = StepRecord(name=name, status="running", startedAtUtc=self.now())
        with self._lock:
            self.report.steps.append(rec)
        self._save()  # a killed agent still leaves which step it was in
        started = self.clock()
        # a step running beside another (the early close) does not open a CI log group inside the other's
        grouped = self.ci is not None and group
        section = self.ci.group(f"cicd-tools flow: {name}") if grouped and self.ci else contextlib.nullcontext()
        try:
            with section:
                body(rec)
        except StepNotAvailable as exc:
            rec.status, rec.note = "not-available", exc.message
            log.warning("%s: %s", name, exc.message)
        except BaseException as exc:
            rec.error = ErrorInfo.from_error(exc)
            rec.status = "interrupted" if rec.error.exitCode == int(ExitCode.INTERRUPTED) else "failed"
            raise
        else:
            rec.status = "ok"
        finally:
            rec.durationSeconds = round(self.clock() - started, 3)
            self._save()

    def _save(self) -> None:
        """Write the report; a write failure never stops the flow (cleanup matters more), it ends it with exit 2."""
        if self.report_path is None:
            return
        with self._lock:
            try:
                write_report(self.report_path, self.report)
            except (OSError, OutputRefused) as exc:
                if self.save_error is None:
                    log.error("cannot write the evidence report %s: %s", printable(str(self.report_path)), exc)
                self.save_error = exc

    def record_output(self, name: str, value: str) -> None:
        """An output a step's command set (e.g. a run id before the wait): evidence at once."""
        self.report.outputs[name] = value
        self._save()

    def set_output(self, name: str, value: str) -> None:
        """A CI output (also recorded in the report, and saved at once: evidence first)."""
        with self._lock:
            if self.ci is not None:
                self.ci.set_output(name, value)
            if not isinstance(self.ci, RecordingDialect) or self.ci.sink is None:
                self.report.outputs[name] = value
                self._save()
