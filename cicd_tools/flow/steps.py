"""The flow's first half (firewall, smoke, register, pointers): typed requests from the configuration, the operation,
its result as evidence. The second half (ADF run, verify, mirror) is in ``run_steps.py``.

Values the configuration file does not hold (the firewall's grace and guard interval, the smoke's denied budget,
the ADF poll interval) come from the same ``CICD_*`` variables and defaults the commands use.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cicd_tools.flow.evidence import (
    record_close,
    record_open,
    record_pointer,
    record_registration,
    record_rollback,
    smoke_evidence,
)
from cicd_tools.flow.prewarm import modules_for, start_prewarm
from cicd_tools.flow.support import StepFailed
from cicd_tools.report.model import (
    AssetEvidence,
    ErrorInfo,
    EvidenceReport,
    FirewallEvidence,
    PointerEvidence,
    StepRecord,
)
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import CicdError, ConfigError, ExitCode

if TYPE_CHECKING:
    from cicd_tools.codeassets.register import AssetOutcome
    from cicd_tools.flow.operations import FlowOperations
    from cicd_tools.flow.readiness import ReadinessRequest
    from cicd_tools.settings.config import FlowConfig, LoadedConfig
    from cicd_tools.storage.operations import FirewallClosed, FirewallCloseRequest

log = logging.getLogger("cicd_tools.flow")

EXPECTED_CODE_IDS = "expectedCodeIds"  # the pipeline parameter that pins a run to this flow's registrations


def output_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class StepsMixin:
    """The step bodies of ``Flow`` (which owns the report, the outputs and the saving)."""

    cfg: FlowConfig
    loaded: LoadedConfig
    env: Mapping[str, str]
    ops: FlowOperations
    report: EvidenceReport
    lease_id: str
    open_attempted: bool
    interrupted: bool
    _lock: threading.RLock
    _save: Callable[[], None]
    set_output: Callable[[str, str], None]

    # --- settings shared by the steps -----------------------------------------------------------------------

    def _knob(self, var: str, default: str) -> str:
        return self.env.get(var) or default

    def _settings(self) -> Settings:
        """The merged configuration's settings, each with its source (flag, variable or file key)."""
        from cicd_tools.settings.config import settings_of

        return settings_of(self.loaded, self.env)

    def _workspace(self) -> Settings:
        return self._settings()

    def _readiness_request(self) -> ReadinessRequest:
        from cicd_tools.flow.readiness import readiness_request

        return readiness_request(self.cfg, self._settings().arm_endpoint)

    # --- firewall ---------------------------------------------------------------------------------------

    def _open(self, rec: StepRecord) -> None:
        from cicd_tools.storage.operations import (
            FirewallOpenRequest,
            bounded_duration,
            duration_or_zero,
            state_file,
        )

        fw = self.cfg.firewall
        self.report.firewall = ev = FirewallEvidence(leaseId=self.lease_id, ip=fw.ip)
        rec.command.append("cicd-tools firewall open")
        self.open_attempted = True
        self._save()  # the lease id is on record before the rule exists
        request = FirewallOpenRequest(
            settings=self._settings(), lease_id=self.lease_id, state=state_file(fw.state_file, self.env),
            ttl=bounded_duration(fw.ttl, "--ttl"), timeout=bounded_duration(fw.timeout, "--timeout"), ip=fw.ip,
            grace=duration_or_zero(self._knob("CICD_FIREWALL_GRACE", "15s")),
            guard_interval=duration_or_zero(self._knob("CICD_FIREWALL_GUARD_INTERVAL", "3s")),
            successes=int(self._knob("CICD_FIREWALL_SUCCESSES", "3")))

        def on_ip(ip: str) -> None:
            ev.ip = ip
            self._save()
            # the rule is about to be added and its propagation waited for: import the later steps' SDKs meanwhile
            later = [s for s in ("register", "model-mirror") if self.cfg.step_enabled(s)]
            start_prewarm(modules_for(later))

        def on_rollback(rollback: object) -> None:
            record_rollback(ev, rollback)  # type: ignore[arg-type]
            self._save()  # before the open's error is raised: a second signal cannot lose it

        opened = self.ops.firewall_open(request, on_ip=on_ip, on_rollback=on_rollback)
        result = opened.result
        log.info("%s", f"nothing to do on {opened.account.name}: {result.skipped}" if result.skipped else
                 f"{opened.ip} {'already allowed' if result.preexisting else 'added'} on {opened.account.name}"
                 f" (lease {opened.lease_id}, until {result.expires_at})")
        record_open(ev, opened)
        self._save()
        self.set_output("agentIp", opened.ip)
        self.set_output("leaseId", opened.lease_id)
        for warning in opened.warnings:
            log.warning("firewall open: %s", warning)
        if opened.guard_error is not None:
            log.warning("the firewall guard could not start (%s); lease %s is not defended against concurrent"
                        " writers", opened.guard_error, opened.lease_id)

    def _close_request(self) -> FirewallCloseRequest:
        # The state file open wrote (before any change) is the record of what to remove; the lease id goes along
        # only when configured, so a failed open that changed nothing is not chased through ARM. A cancelled flow
        # hands the close watch to the detached release watcher instead of waiting for it.
        from cicd_tools.ci import build_id
        from cicd_tools.storage.operations import FirewallCloseRequest, bounded_duration, duration_or_zero, state_file

        fw = self.cfg.firewall
        return FirewallCloseRequest(
            settings=self._settings(), state=state_file(fw.state_file, self.env),
            timeout=bounded_duration(fw.timeout, "--timeout"), lease_id=fw.lease_id,
            lease_known=bool(fw.lease_id or build_id(self.env)),
            grace=duration_or_zero(self._knob("CICD_FIREWALL_GRACE", "15s")), ip=fw.ip, watch=not self.interrupted)

    def _close(self, rec: StepRecord) -> None:
        rec.command.append("cicd-tools firewall close")
        self.report.firewall = ev = self.report.firewall or FirewallEvidence(leaseId=self.lease_id)
        closed: FirewallClosed | None = None
        try:
            request = self._close_request()
            closed = self.ops.firewall_close(
                request, on_guard_stopped=self._guard_stopped)
        except BaseException:
            record_close(ev, closed, ok=False)
            raise
        record_close(ev, closed, ok=True)

    def _guard_stopped(self, pid: int) -> None:
        """The open's guard process was stopped: a fact for the log and the CI output, never its pid."""
        log.info("stopped the firewall guard (process %d)", pid)
        self.set_output("guardStopped", "true")

    # --- storage smoke ----------------------------------------------------------------------------------

    def _smoke(self, rec: StepRecord) -> None:
        from cicd_tools.storage.operations import duration_or_zero

        rec.command.append("cicd-tools storage smoke")
        result = self.ops.storage_smoke(self._settings(),
                                        duration_or_zero(self._knob("CICD_DENIED_BUDGET", "30s")))
        self.report.smoke = smoke_evidence(result)
        failure = result.failure
        if not result.usable:
            what = f"{failure.step} failed [{failure.code}]: {failure.fix}" if failure else "not usable"
            raise StepFailed(f"storage smoke: the data plane of {result.account_url} is not usable: {what}",
                             int(ExitCode.AZURE), code=failure.code if failure else None)

    # --- code register, pointers ------------------------------------------------------------------------

    def _register(self, rec: StepRecord) -> None:
        from pathlib import Path

        from cicd_tools.codeassets.operations import RegisterRequest
        from cicd_tools.codeassets.register import AssetSpec, resolve_requested_version, validate_name
        from cicd_tools.codeassets.workspace import WorkspaceRef

        code = self.cfg.code
        rec.command.append("cicd-tools code register")
        self.report.assets = [AssetEvidence(name=a.name, path=a.path) for a in code.assets]
        by_name = {a.name: a for a in self.report.assets}
        repo_root = self.env.get("CICD_REPO_ROOT")
        request = RegisterRequest(
            workspace=WorkspaceRef.from_settings(self._workspace()),
            specs=tuple(AssetSpec(validate_name(a.name), Path(a.path)) for a in code.assets),
            requested_version=resolve_requested_version(code.version, self.env), unique=code.unique,
            repo_root=Path(repo_root) if repo_root else None)

        def on_done(outcome: AssetOutcome) -> None:
            # Evidence first: each registration is on record the moment Azure ML answered it (a cancel may follow).
            if outcome.result is not None:
                log.info("%s: version %s (requested %s)%s", outcome.spec.name, outcome.result.version,
                         outcome.result.requested_version, ", existing content" if outcome.result.dedup else "")
            with self._lock:
                record_registration(by_name[outcome.spec.name], outcome)
                self._save()
                if outcome.result is not None and outcome.error is None:
                    prefix = output_name(outcome.spec.name)
                    self.set_output(f"{prefix}_codeVersion", outcome.result.version)
                    self.set_output(f"{prefix}_codeAssetId", outcome.result.asset_id)

        try:
            outcomes = self.ops.code_register(request, on_done=on_done)
        except BaseException as exc:  # a cancel: what had no answer yet is named, with the version it asked for
            self._unanswered(exc, request.requested_version)
            raise
        for outcome in outcomes:
            record_registration(by_name[outcome.spec.name], outcome)
        self._save()
        worst = max((o.exit_code for o in outcomes), default=0)
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            first = failed[0].error
            assert first is not None
            raise StepFailed(f"code register failed for {', '.join(o.spec.name for o in failed)}: {first.message}",
                             worst, code=first.code, hint=first.hint)

    def _unanswered(self, exc: BaseException, requested: str) -> None:
        """Registrations without an answer when the step was cut short: their PUT may still land in Azure ML."""
        with self._lock:
            for ev in self.report.assets:
                if ev.version is None and ev.error is None:
                    ev.requestedVersion = ev.requestedVersion or requested
                    ev.error = ErrorInfo.from_error(exc)
                    ev.error.message = (f"no answer from Azure ML for {ev.name}:{requested} when the flow was"
                                        f" cancelled ({ev.error.message}); if its upload had finished, Azure ML"
                                        " may still create that version")
            self._save()

    def _pointers(self, rec: StepRecord) -> None:
        from cicd_tools.pointer.operations import PointerWriteRequest

        first: BaseException | None = None
        todo = [a for a in self.report.assets if a.version and a.assetId]
        if not todo:
            raise ConfigError("no registered version to publish: the register step was skipped or returned none",
                              hint="Enable the register step, or skip pointers with --skip pointers.")
        for ev in todo:
            name = ev.returnedName or ev.name
            assert ev.version is not None
            rec.command.append(f"cicd-tools pointer write --asset {name} --version {ev.version}")
            request = PointerWriteRequest(asset=name, version=ev.version, workspace=self._workspace(),
                                          asset_id=ev.assetId, requested_version=ev.requestedVersion,
                                          content_hash=ev.contentHash)
            ev.pointer = PointerEvidence()
            try:
                published = self.ops.pointer_write(request, self._settings())
                record_pointer(ev.pointer, published)
                log.info("pointer %s -> version %s (was %s)", name, published.pointer.version,
                         published.previous_version or "unset")
                # one output per asset: a plain ``pointerVersion`` would hold only the last asset's version
                self.set_output(f"{output_name(name)}_pointerVersion", published.pointer.version)
            except CicdError as err:
                ev.pointer.error = ErrorInfo.from_error(err)
                if int(err.exit_code) == int(ExitCode.INTERRUPTED):
                    raise  # a cancelled job publishes nothing more
                first = first or err
            self._save()
        if first is not None:
            raise first
