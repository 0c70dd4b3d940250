"""The flow's second half: the ADF run (pinned to this flow's registrations), AML verify, the model mirror.

These steps need no data-plane access from the agent (the factory reads the pointer through its own private
endpoint, verify reads ARM), so they run after the early close of the firewall rule. ``steps.py`` has the first half.
"""

from __future__ import annotations

import logging

from cicd_tools.flow.evidence import plain, record_adf_run, record_mirror, record_verify, registered_ids
from cicd_tools.flow.steps import EXPECTED_CODE_IDS, StepsMixin, output_name
from cicd_tools.flow.support import StepFailed, StepNotAvailable
from cicd_tools.report.model import AdfRunEvidence, MirrorEvidence, StepRecord, VerifyEvidence
from cicd_tools.support.errors import CicdError, ConfigError, ContractViolation, ExitCode

log = logging.getLogger("cicd_tools.flow")


class RunStepsMixin(StepsMixin):
    """The step bodies after the pointers: what the factory and Azure ML did with this flow's versions."""

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
