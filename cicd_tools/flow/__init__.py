"""``cicd-tools flow``: the whole chain in one command, with guaranteed cleanup and evidence after every step.

firewall open → storage smoke → code register → pointer write → adf run --wait → aml verify → firewall close.
Each step runs the real command handler in process (``invoke(argv)``), so the flow does exactly what the
documented commands do, and tests replace ``invoke`` with a fake to check the orchestration. The report is
rewritten after every step, before any later failure is reported; the close step runs on every exit
(failure, SIGTERM, SIGINT) with further signals held until it is done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cicd_tools import __version__
from cicd_tools.ci import CiDialect, run_provenance
from cicd_tools.cli._base import Outcome
from cicd_tools.flow.evidence import (
    plain,
    record_adf_run,
    record_close,
    record_mirror,
    record_open,
    record_pointer,
    record_registration,
    record_verify,
    smoke_evidence,
)
from cicd_tools.flow.support import (
    RecordingDialect,
    StepFailed,
    StepNotAvailable,
    signals_held,
    utc_now,
)
from cicd_tools.report.model import (
    AdfRunEvidence,
    AssetEvidence,
    ErrorInfo,
    EvidenceReport,
    FirewallEvidence,
    MirrorEvidence,
    PointerEvidence,
    StepRecord,
    VerifyEvidence,
    write_report,
)
from cicd_tools.settings.config import LoadedConfig, check_ready
from cicd_tools.support.errors import (
    CicdError,
    ConfigError,
    ContractViolation,
    ExitCode,
    Interrupted,
    RunFailed,
)
from cicd_tools.support.outpath import OutputRefused, printable

__all__ = ["Flow", "Invoke", "RecordingDialect", "StepFailed", "StepNotAvailable", "signals_held"]

log = logging.getLogger(__name__)

Invoke = Callable[[list[str]], Outcome]


def _flag_args(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    out: list[str] = []
    for flag, value in pairs:
        if value not in (None, ""):
            out += [flag, str(value)]
    return out


class Flow:
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
        invoke: Invoke,
        *,
        ci: CiDialect | None = None,
        report_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = utc_now,
        available: Callable[[list[str]], bool] | None = None,
    ) -> None:
        from cicd_tools.storage.leases import default_lease_id, validate_lease_id

        env = os.environ if environ is None else environ
        self.cfg = loaded.config
        self.invoke = invoke
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

    def run(self) -> EvidenceReport:
        self._refuse_unavailable()
        steps: dict[str, Callable[[StepRecord], None]] = {
            "firewall-open": self._open, "smoke": self._smoke, "register": self._register,
            "pointers": self._pointers, "adf-run": self._adf_run, "aml-verify": self._verify,
            "model-mirror": self._mirror,
        }
        failure: BaseException | None = None
        try:
            for name in self.MAIN_STEPS:
                self._step(name, steps[name])
        except BaseException as exc:  # KeyboardInterrupt and Interrupted too: cleanup comes first
            failure = exc
        done = {s.name for s in self.report.steps}
        for name in self.MAIN_STEPS:
            if name not in done:
                self.report.steps.append(StepRecord(name=name, status="not-run"))
        close_error: BaseException | None = None
        with signals_held() as held:
            try:
                self._step("firewall-close", self._close)
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

    def _step(self, name: str, body: Callable[[StepRecord], None]) -> None:
        if not self.cfg.step_enabled(name) or (name == "firewall-close" and not self.open_attempted):
            why = "firewall-open did not run" if self.cfg.step_enabled(name) else "disabled by configuration"
            self.report.steps.append(StepRecord(name=name, status="skipped", note=why))
            self._save()
            return
        rec = StepRecord(name=name, status="running", startedAtUtc=self.now())
        self.report.steps.append(rec)
        self._save()  # a killed agent still leaves which step it was in
        started = self.clock()
        group = self.ci.group(f"cicd-tools flow: {name}") if self.ci is not None else contextlib.nullcontext()
        try:
            with group:
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
        """A CI output of the flow itself (also recorded in the report)."""
        if self.ci is not None:
            self.ci.set_output(name, value)
        if not isinstance(self.ci, RecordingDialect):
            self.report.outputs[name] = value

    def _call(self, rec: StepRecord, argv: list[str]) -> Outcome:
        from cicd_tools.support.redact import redact

        rec.command.append(redact(shlex.join(["cicd-tools", *argv])))
        outcome = self.invoke(argv)
        if outcome.text:
            log.info("%s", outcome.text)
        return outcome

    @staticmethod
    def _check(outcome: Outcome, what: str) -> None:
        if outcome.exit_code:
            raise StepFailed(f"{what} failed (exit {outcome.exit_code}); its output above says why", outcome.exit_code)

    # --- flags shared by the steps ----------------------------------------------------------------------

    def _account_flags(self) -> list[str]:
        a = self.cfg.azure
        return _flag_args([("--subscription-id", a.subscription_id), ("--resource-group", a.resource_group),
                           ("--account", self.cfg.storage.account)])

    def _storage_flags(self) -> list[str]:
        s = self.cfg.storage
        return _flag_args([("--account", s.account), ("--blob-endpoint", s.blob_endpoint),
                           ("--container", s.container)])

    def _workspace_flags(self) -> list[str]:
        a = self.cfg.azure
        return _flag_args([("--subscription-id", a.subscription_id), ("--resource-group", a.resource_group),
                           ("--workspace", a.workspace), ("--arm-endpoint", a.arm_endpoint)])

    def _lease_flags(self) -> list[str]:
        return _flag_args([("--lease-id", self.lease_id), ("--state-file", self.cfg.firewall.state_file)])

    # --- the steps --------------------------------------------------------------------------------------

    def _open(self, rec: StepRecord) -> None:
        fw = self.cfg.firewall
        self.report.firewall = ev = FirewallEvidence(leaseId=self.lease_id, ip=fw.ip)
        argv = ["firewall", "open", *self._account_flags(), *_flag_args([
            ("--blob-endpoint", self.cfg.storage.blob_endpoint), ("--container", self.cfg.storage.container),
            ("--ip", fw.ip), ("--ttl", fw.ttl), ("--timeout", fw.timeout)]), *self._lease_flags()]
        self.open_attempted = True
        self._save()  # the lease id is on record before the rule exists
        out = self._call(rec, argv)
        record_open(ev, out.data, out.exit_code)
        self._check(out, "firewall open")

    def _close(self, rec: StepRecord) -> None:
        # The state file open wrote (before any change) is the record of what to remove; the lease id goes along
        # only when configured, so a failed open that changed nothing is not chased through ARM.
        argv = ["firewall", "close", *self._account_flags(), *_flag_args([
            ("--lease-id", self.cfg.firewall.lease_id), ("--state-file", self.cfg.firewall.state_file)])]
        out = self._call(rec, argv)
        self.report.firewall = self.report.firewall or FirewallEvidence(leaseId=self.lease_id)
        record_close(self.report.firewall, out.data, out.exit_code)
        self._check(out, "firewall close")

    def _smoke(self, rec: StepRecord) -> None:
        out = self._call(rec, ["storage", "smoke", *self._storage_flags()])
        self.report.smoke = smoke_evidence(out.data)
        self._check(out, "storage smoke")

    def _register(self, rec: StepRecord) -> None:
        code = self.cfg.code
        argv = ["code", "register", *self._workspace_flags()]
        for asset in code.assets:
            argv += ["--asset", f"{asset.name}={asset.path}"]
        argv += _flag_args([("--version", code.version)]) + (["--unique"] if code.unique else [])
        self.report.assets = [AssetEvidence(name=a.name, path=a.path) for a in code.assets]
        out = self._call(rec, argv)
        record_registration(self.report.assets, out.data)
        self._check(out, "code register")

    def _pointers(self, rec: StepRecord) -> None:
        first: BaseException | None = None
        todo = [a for a in self.report.assets if a.version and a.assetId]
        if not todo:
            raise ConfigError("no registered version to publish: the register step was skipped or returned none",
                              hint="Enable the register step, or skip pointers with --skip pointers.")
        for ev in todo:
            name = ev.returnedName or ev.name
            argv = ["pointer", "write", "--asset", name, "--version", str(ev.version), "--asset-id", str(ev.assetId),
                    *_flag_args([("--requested-version", ev.requestedVersion), ("--content-hash", ev.contentHash)]),
                    *self._workspace_flags(), *self._storage_flags()]
            ev.pointer = PointerEvidence()
            try:
                out = self._call(rec, argv)
                record_pointer(ev.pointer, out.data)
                self._check(out, f"pointer write {name}")
                self.set_output(f"{_output_name(name)}_pointerVersion", str(ev.pointer.after))
            except CicdError as err:
                ev.pointer.error = ErrorInfo.from_error(err)
                if int(err.exit_code) == int(ExitCode.INTERRUPTED):
                    raise  # a cancelled job publishes nothing more
                first = first or err
            self._save()
        if first is not None:
            raise first

    def _adf_run(self, rec: StepRecord) -> None:
        adf = self.cfg.adf
        for pipeline in adf.pipelines:
            argv = ["adf", "run", *_flag_args([("--factory", self.cfg.azure.factory)]), "--pipeline", pipeline.name]
            for key, value in pipeline.parameters.items():
                argv += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
            argv += ["--wait", "--timeout", adf.timeout]
            ev = AdfRunEvidence(pipeline=pipeline.name, factory=self.cfg.azure.factory,
                                parameters=plain(dict(pipeline.parameters)))
            self.report.adfRuns.append(ev)
            seen = dict(self.report.outputs)
            try:
                out = self._call(rec, argv)
            except BaseException:
                # Interrupted or failed after createRun: the command set its run id as an output first; keep it.
                if self.report.outputs.get("adfRunId") not in (None, seen.get("adfRunId")):
                    ev.runId = self.report.outputs["adfRunId"]
                    ev.status = self.report.outputs.get("adfRunStatus") or ev.status
                    self._save()
                raise
            record_adf_run(ev, out.data)
            if ev.runId:
                self.set_output(f"{_output_name(pipeline.name)}_adfRunId", ev.runId)
                if len(adf.pipelines) == 1:
                    self.set_output("adfRunId", ev.runId)
            self._save()
            self._check(out, f"adf run {pipeline.name}")
            if ev.status != "Succeeded":
                raise RunFailed(f"ADF run {ev.runId} of {pipeline.name} ended {ev.status}: {ev.message or ''}".strip(),
                                code=ev.status)

    def _verify(self, rec: StepRecord) -> None:
        runs = [r for r in self.report.adfRuns if r.runId]
        if not runs and any(s.name == "adf-run" and s.status == "not-available" for s in self.report.steps):
            raise StepNotAvailable("aml-verify checks the jobs of an ADF run, and adf-run is not available")
        if not runs:
            raise ConfigError("aml-verify needs an ADF run id, and the adf-run step produced none",
                              hint="Enable the adf-run step, or skip verification with --skip aml-verify.")
        pointers = self.cfg.verify.pointers or tuple(a.returnedName or a.name for a in self.report.assets) \
            or tuple(a.name for a in self.cfg.code.assets)
        failed: list[str] = []
        for run in runs:
            assert run.runId is not None
            # One call per run with every pointer: each job is held to the pointer its run named (assetName).
            ev = VerifyEvidence(adfRunId=run.runId, pointers=list(pointers))
            self.report.verify.append(ev)
            out = self._call(rec, ["aml", "verify", "--adf-run-id", run.runId, "--pointer", *pointers])
            record_verify(ev, out.data)
            self._save()
            self._check(out, f"aml verify {' '.join(pointers)}")
            if not ev.ok:
                failed.append(f"run {run.runId}")
        if failed:
            raise ContractViolation(f"the jobs did not run the published code version: {', '.join(failed)}",
                                    code="CodeVersionMismatch",
                                    hint="Read the verify table: a job's codeId differs from the pointer's assetId.")


    def _mirror(self, rec: StepRecord) -> None:
        """Off the critical path: the validated checkpoint becomes a model version; a failure is a warning."""
        mirror = self.cfg.mirror
        assert mirror.name is not None  # validated with the configuration
        runs = [r for r in self.report.adfRuns if r.runId]
        if not runs:
            rec.note = "no ADF run to mirror a checkpoint from"
            return
        for run in runs:
            assert run.runId is not None
            ev = MirrorEvidence(adfRunId=run.runId, modelName=mirror.name)
            self.report.mirror.append(ev)
            argv = ["model", "mirror", "--adf-run-id", run.runId, "--name", mirror.name, "--best-effort",
                    *self._workspace_flags(), *_flag_args([("--factory", self.cfg.azure.factory),
                                                           ("--output-name", mirror.output_name)])]
            try:
                out = self._call(rec, argv)
                record_mirror(ev, out.data)
            except CicdError as err:
                if int(err.exit_code) == int(ExitCode.INTERRUPTED):
                    raise
                ev.ok, ev.error = False, ErrorInfo.from_error(err)  # e.g. a usage error: still not blocking
                ev.warning = f"model mirror failed (not blocking): {err.message}"
            self._save()
            if ev.warning:
                log.warning("%s", ev.warning)
                rec.note = ev.warning
            elif ev.modelVersion:
                self.set_output("modelVersion", ev.modelVersion)
                if ev.modelAssetId:
                    self.set_output("modelAssetId", ev.modelAssetId)


def _output_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", name)
