"""The flow's steps: typed requests from the resolved configuration, the operation, its result as evidence.

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
    plain,
    record_adf_run,
    record_close,
    record_mirror,
    record_open,
    record_pointer,
    record_registration,
    record_rollback,
    record_verify,
    registered_ids,
    smoke_evidence,
)
from cicd_tools.flow.prewarm import modules_for, start_prewarm
from cicd_tools.flow.support import StepFailed, StepNotAvailable
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
)
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import CicdError, ConfigError, ContractViolation, ExitCode

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
            later = [s for s in ("register", "adf-run", "aml-verify", "model-mirror") if self.cfg.step_enabled(s)]
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

    # --- adf run ----------------------------------------------------------------------------------------

    def _pinned_parameters(self, pipeline: str, parameters: dict[str, object]) -> dict[str, object]:
        """The configured parameters, plus ``expectedCodeIds`` (this flow's registrations) when the published
        pipeline declares it: the run then fails when the pointer it reads names another version."""
        from cicd_tools.adf.client import FactoryRef

        ids = registered_ids(self.report.assets)
        if not ids or EXPECTED_CODE_IDS in parameters:
            return parameters
        a = self._settings()
        factory = FactoryRef(str(a.subscription_id), str(a.resource_group), str(a.factory))
        try:
            declared = self.ops.adf_pipeline_parameters(factory, a.arm_endpoint, pipeline)
        except CicdError as err:  # an older factory keeps working: the run is checked by aml verify
            log.info("could not read the parameters of pipeline %s: %s", pipeline, err.message)
            declared = None
        if not declared or EXPECTED_CODE_IDS not in declared:
            log.info("pipeline %s does not declare %s: the run is not pinned to this flow's registrations"
                     " (aml verify still holds its jobs to them)", pipeline, EXPECTED_CODE_IDS)
            return parameters
        return {**parameters, EXPECTED_CODE_IDS: ids}

    def _adf_run(self, rec: StepRecord) -> None:
        from cicd_tools.adf.client import FactoryRef
        from cicd_tools.adf.operations import AdfRunRequest
        from cicd_tools.storage.lease_tags import parse_duration

        adf = self.cfg.adf
        settings = self._settings()
        for pipeline in adf.pipelines:
            parameters = self._pinned_parameters(pipeline.name, dict(pipeline.parameters))
            rec.command.append(f"cicd-tools adf run --pipeline {pipeline.name} --wait")
            ev = AdfRunEvidence(pipeline=pipeline.name, factory=settings.factory, parameters=plain(parameters))
            self.report.adfRuns.append(ev)
            settings.require("subscription_id", "resource_group", "factory")
            request = AdfRunRequest(
                factory=FactoryRef(str(settings.subscription_id), str(settings.resource_group), str(settings.factory)),
                pipeline=pipeline.name, parameters=parameters, wait=True, timeout=parse_duration(adf.timeout),
                timeout_text=adf.timeout, poll=parse_duration(self._knob("CICD_ADF_POLL", "5s")))

            def started(run_id: str, ev: AdfRunEvidence = ev) -> None:
                ev.runId = run_id  # evidence first: the run id is on record before the wait
                self.set_output("adfRunId", run_id)

            def status(value: str, ev: AdfRunEvidence = ev) -> None:
                ev.status = value
                self.set_output("adfRunStatus", value)

            try:
                run = self.ops.adf_run(request, settings.arm_endpoint, on_started=started, on_status=status)
            finally:
                self._save()
            record_adf_run(ev, run)
            log.info("pipeline %s run %s in factory %s: %s%s", run.pipeline, run.run_id, run.factory, run.status,
                     f" ({run.message})" if run.message else "")
            self.set_output(f"{output_name(pipeline.name)}_adfRunId", run.run_id)
            if len(adf.pipelines) == 1:
                self.set_output("adfRunId", run.run_id)
            self._save()
            if not run.succeeded:
                raise StepFailed(f"ADF run {run.run_id} of {pipeline.name} ended {run.status}: {run.message}".strip(),
                                 run.exit_code or int(ExitCode.RUN_FAILED), code=run.status)

    # --- aml verify, model mirror -----------------------------------------------------------------------

    def _verify(self, rec: StepRecord) -> None:
        from cicd_tools.aml.operations import VerifyRequest
        from cicd_tools.codeassets.workspace import WorkspaceRef

        runs = [r for r in self.report.adfRuns if r.runId]
        if not runs and any(s.name == "adf-run" and s.status == "not-available" for s in self.report.steps):
            raise StepNotAvailable("aml-verify checks the jobs of an ADF run, and adf-run is not available")
        if not runs:
            raise ConfigError("aml-verify needs an ADF run id, and the adf-run step produced none",
                              hint="Enable the adf-run step, or skip verification with --skip aml-verify.")
        pointers = self.cfg.verify.pointers or tuple(a.returnedName or a.name for a in self.report.assets) \
            or tuple(a.name for a in self.cfg.code.assets)
        own = registered_ids(self.report.assets)  # each job is held to THIS flow's registration of its asset
        failures: list[str] = []
        moved: list[str] = []
        worst = 0
        for run in runs:
            assert run.runId is not None
            ev = VerifyEvidence(adfRunId=run.runId, pointers=list(pointers))
            self.report.verify.append(ev)
            rec.command.append(f"cicd-tools aml verify --adf-run-id {run.runId} --pointer {' '.join(pointers)}")
            request = VerifyRequest(workspace=WorkspaceRef.from_settings(self._workspace()),
                                    factory=self._settings().factory, adf_run_id=run.runId, pointers=tuple(pointers),
                                    expected_code_ids=own)
            result = self.ops.aml_verify(request, self._settings())
            record_verify(ev, result)
            self._save()
            self.set_output("amlVerifyOk", "true" if result.ok else "false")
            worst = max(worst, result.exit_code)
            for job in ev.jobs:
                if job.codeIdMatches is False:
                    failures.append(f"job {job.name} of run {run.runId} ran {_version(job.codeId)}, not"
                                    f" {_version(job.expectedCodeId)} (registered by this flow)")
                elif not job.ok:
                    failures.append(f"job {job.name} of run {run.runId}: {job.status}")
            for asset, now in ev.pointerMoved.items():  # context, not a failure: our jobs may still be ours
                log.warning("the pointer %s moved to %s meanwhile (another publisher)", asset, _version(now))
                moved.append(f"the pointer {asset} moved to {_version(now)} meanwhile")
        if worst == int(ExitCode.CONTRACT) or (worst == 0 and failures):
            raise ContractViolation("the jobs did not run the code version this flow registered: "
                                    + "; ".join(failures + moved), code="CodeVersionMismatch",
                                    hint="Another publisher moved the pointer while this flow ran, or the"
                                         " pipeline ignores it: read the verify table in the report.")
        if worst:
            raise StepFailed("aml verify: " + "; ".join(failures), worst)

    def _mirror(self, rec: StepRecord) -> None:
        """Off the critical path: the validated checkpoint becomes a model version; a failure is a warning."""
        from cicd_tools.aml.mirroring import MirrorRequest, MirrorResult

        mirror = self.cfg.mirror
        assert mirror.name is not None  # validated with the configuration
        runs = [r for r in self.report.adfRuns if r.runId]
        if not runs:
            rec.note = "no ADF run to mirror a checkpoint from"
            return
        self.set_output("modelName", mirror.name)  # once, whatever the number of runs
        for run in runs:
            assert run.runId is not None
            ev = MirrorEvidence(adfRunId=run.runId, modelName=mirror.name)
            self.report.mirror.append(ev)
            rec.command.append(f"cicd-tools model mirror --adf-run-id {run.runId} --name {mirror.name}")
            request = MirrorRequest(workspace=self._workspace(), name=mirror.name, adf_run_id=run.runId,
                                    factory=self._settings().factory, output_name=mirror.output_name or "model")
            result = MirrorResult(model_name=mirror.name)
            try:
                self.ops.model_mirror(request, result)
            except CicdError as err:
                if int(err.exit_code) == int(ExitCode.INTERRUPTED):
                    raise
                result.failed(err)
                result.warning = f"model mirror failed (not blocking): {err.message}" + (
                    f" ({err.hint})" if err.hint else "")
            record_mirror(ev, result)
            self._save()
            if ev.warning:
                log.warning("%s", ev.warning)
                rec.note = ev.warning
            elif ev.modelVersion:
                self.set_output("modelVersion", ev.modelVersion)
                if ev.modelAssetId:
                    self.set_output("modelAssetId", ev.modelAssetId)


def _version(code_id: str | None) -> str:
    """``training-code:421`` for a code asset id (the id itself when it is not one)."""
    from cicd_tools.aml.verify import code_version_of

    found = code_version_of(code_id)
    return f"{found[0]}:{found[1]}" if found else str(code_id)
