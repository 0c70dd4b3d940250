"""Run a sandbox Azure ML command job for real, on this machine, the way the AKS extension runs it.

Per job, in a daemon thread: Queued → Preparing (the storage verdict of ``chain.job_storage_access``,
then the code asset downloaded from the workspace storage, asset inputs downloaded to folders) →
Running (``command`` with ``${{inputs.x}}`` / ``${{outputs.y}}`` substituted, in ``/bin/sh`` in the code
folder, with the job's environment variables and a timeout; its log streamed line by line) →
Finalizing (declared outputs uploaded to the workspace datastore at their ``uri``, the log to
``ExperimentRun/dcid.{job}/user_logs/std_log.txt`` in the artifact store's ``azureml`` container, also every
second while the command runs) → Completed, or Failed (its error: run history). Each state lasts at least the
``JobTiming`` of the sandbox (control switch). A cancel kills the process: CancelRequested, then Canceled after
the cancel lag.

The environment is validated, not built: every job runs with the sandbox's own Python (``python`` on
``PATH``), and no variable of the sandbox process leaks into the job (not the sandbox secret either).

Who can start one, and what it can reach: only a caller holding an ARM token the sandbox signed (the job PUT
is authenticated like every ARM route) with a role on the workspace. The job's working folder is under the
sandbox's state folder (``STATE/aml-jobs/``, created owner-only), but the command is **not** confined: it runs
as the user who started the sandbox, with that user's file access and network, like any program they run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cicd_tools.sandbox.ml import job_checks as aml_job_checks
from cicd_tools.sandbox.ml import job_store as aml_jobs
from cicd_tools.sandbox.ml.compute import ComputeSpec
from cicd_tools.sandbox.ml.workspace import ARTIFACT_CONTAINER, _datastore_container
from cicd_tools.sandbox.server import Hub
from cicd_tools.sandbox.world.chain import job_storage_access

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3600.0  # seconds, when the job sets no limits.timeout
LOG_TAIL_LINES = 20
LOG_UPLOAD_INTERVAL = 1.0  # seconds between uploads of the growing std_log.txt while the command runs
_DURATION_RE = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


class JobFailure(Exception):
    """Ends a job as Failed with the service's error code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobCanceled(Exception):
    """Ends a job as Canceled."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: str | None) -> float:
    """Seconds in an ISO 8601 duration (``PT5M``); the default when absent or unreadable."""
    match = _DURATION_RE.match(text or "")
    if not text or match is None:
        return DEFAULT_TIMEOUT
    return (int(match["d"] or 0) * 86400 + int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60
            + float(match["s"] or 0)) or DEFAULT_TIMEOUT


def start_job(hub: Hub, record: aml_jobs.JobRecord, spec: ComputeSpec, generation: int) -> None:
    """Run ``record`` in a daemon thread."""
    thread = threading.Thread(target=_run, args=(hub, record, spec, generation), daemon=True,
                              name=f"aml-job-{record.name}")
    thread.start()


def _set_status(hub: Hub, record: aml_jobs.JobRecord, generation: int, status: str) -> None:
    state = aml_jobs.jobs_state(hub)
    with state.lock:
        if state.generation != generation:
            raise JobCanceled()
        if record.cancel.is_set() and status not in aml_jobs.TERMINAL:
            raise JobCanceled()
        now = _now()
        aml_jobs.set_status(record, status, now)
        if status == "Running":
            record.start_time = now
        if status in aml_jobs.TERMINAL:
            record.end_time = now


def _dwell(record: aml_jobs.JobRecord, seconds: float) -> None:
    """Stay in the current state ``seconds`` (the service's queue, preparation or finalisation time)."""
    if seconds > 0 and record.cancel.wait(seconds):
        raise JobCanceled()


def _run(hub: Hub, record: aml_jobs.JobRecord, spec: ComputeSpec, generation: int) -> None:
    jobs_root = hub.state_dir / "aml-jobs"
    jobs_root.mkdir(mode=0o700, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"aml-job-{record.name[:40]}-", dir=jobs_root))
    timing = aml_jobs.jobs_state(hub).timing
    try:
        _set_status(hub, record, generation, "Queued")
        _dwell(record, timing.queued)
        _wait_for_capacity(record, spec)
        _set_status(hub, record, generation, "Preparing")
        _dwell(record, timing.preparing)
        denied = job_storage_access(hub, spec.name)
        if denied is not None:
            raise JobFailure(denied.code, denied.message)
        with _DirectStorage(hub) as storage:
            code_dir = _download_code(hub, storage, record, workdir)
            values = _materialise_inputs(hub, storage, record, workdir)
            outputs = _prepare_outputs(record, workdir)
            _set_status(hub, record, generation, "Running")
            started = time.monotonic()
            rc, timed_out = _execute(hub, storage, record, code_dir, values, outputs, workdir)
            _dwell(record, timing.min_running - (time.monotonic() - started))
            _set_status(hub, record, generation, "Finalizing")
            _upload_log(hub, storage, record)
            _dwell(record, timing.finalizing)
            if timed_out:
                raise JobFailure("JobTimeout", f"The job exceeded its timeout ({record.body.get('limits')}).\n"
                                 + _tail(record))
            if rc != 0:
                raise JobFailure("UserError", f"Execution failed. User process '/bin/sh' exited with status "
                                 f"code {rc}. Log tail:\n{_tail(record)}")
            _upload_outputs(hub, storage, record, outputs)
        _set_status(hub, record, generation, "Completed")
    except JobCanceled:
        _finish(hub, record, generation, "Canceled", None, timing.cancel)
    except JobFailure as failure:
        log.info("sandbox AML job %s failed: %s", record.name, failure.code)
        _finish(hub, record, generation, "Failed", {"code": failure.code, "message": failure.message}, timing.cancel)
    except Exception as exc:  # the sandbox's own fault: the job fails and says so
        log.exception("sandbox AML job %s crashed", record.name)
        _finish(hub, record, generation, "Failed",
                {"code": "SandboxError", "message": f"{type(exc).__name__}: {exc}"}, timing.cancel)
    finally:
        record.done.set()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_capacity(record: aml_jobs.JobRecord, spec: ComputeSpec) -> None:
    """A job asking more instances than the pool has nodes stays Queued (as on AKS) until it is canceled."""
    resources = record.body.get("resources") or {}
    kind = spec.instance_type(str(resources.get("instanceType") or spec.default_instance_type))
    count = int(resources.get("instanceCount") or 1)
    if kind is None or count <= kind.nodes:
        return
    record.log.append(f"Waiting for {count} x {kind.name}: the cluster's pool has {kind.nodes} node(s).")
    log.info("sandbox AML job %s stays Queued: %d x %s, %d node(s)", record.name, count, kind.name, kind.nodes)
    record.cancel.wait()
    raise JobCanceled()


def _finish(hub: Hub, record: aml_jobs.JobRecord, generation: int, status: str, error: dict[str, str] | None,
            cancel_lag: float) -> None:
    """Record the verdict. A canceled job stays CancelRequested ``cancel_lag`` seconds (the service tears the
    run down asynchronously), then ends Canceled."""
    state = aml_jobs.jobs_state(hub)
    if record.cancel.is_set() and cancel_lag > 0:
        time.sleep(cancel_lag)
    with state.lock:
        if state.generation != generation:
            return
        if record.cancel.is_set():
            status, error = "Canceled", None
        record.error = error
        aml_jobs.set_status(record, status, _now())
        record.end_time = _now()


def _tail(record: aml_jobs.JobRecord) -> str:
    return "\n".join(record.log[-LOG_TAIL_LINES:])


# -- storage (straight to Azurite with the account key: the service's own access) --------------------------
class _DirectStorage:
    def __init__(self, hub: Hub) -> None:
        from azure.storage.blob import BlobServiceClient

        info = hub.info()
        account = hub.layout.workspace_storage_account
        self.account = account
        self.service = BlobServiceClient(
            f"https://127.0.0.1:{info['azuritePort']}/{account}", connection_verify=str(info["caBundle"]),
            credential={"account_name": account, "account_key": hub.account_key(account)})

    def __enter__(self) -> _DirectStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.close()

    def download_prefix(self, container: str, prefix: str, target: Path) -> int:
        """Download every blob under ``prefix`` (or the blob named ``prefix``) into ``target``; how many."""
        from azure.core.exceptions import ResourceNotFoundError

        client = self.service.get_container_client(container)
        prefix = prefix.strip("/")
        count = 0
        try:
            blobs = list(client.list_blobs(name_starts_with=prefix))
        except ResourceNotFoundError:
            return 0
        for blob in blobs:
            name = str(blob.name)
            if name == prefix:
                rel = Path(prefix).name
            elif name.startswith(prefix + "/") or not prefix:
                rel = name[len(prefix):].lstrip("/")
            else:
                continue
            if not rel or rel.endswith("/") or (blob.metadata or {}).get("hdi_isfolder") == "true":
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(client.download_blob(name).readall())
            count += 1
        return count

    def upload_folder(self, container: str, prefix: str, source: Path) -> int:
        from azure.core.exceptions import ResourceExistsError

        client = self.service.get_container_client(container)
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        count = 0
        for path in sorted(source.rglob("*")):
            if path.is_file():
                rel = path.relative_to(source).as_posix()
                client.upload_blob(f"{prefix.strip('/')}/{rel}", path.read_bytes(), overwrite=True)
                count += 1
        return count


def _download_code(hub: Hub, storage: _DirectStorage, record: aml_jobs.JobRecord, workdir: Path) -> Path:
    from cicd_tools.sandbox.ml.workspace import _stored

    match = aml_job_checks.CODE_ID_RE.match(str(record.body.get("codeId")))
    assert match is not None  # validated at PUT
    version = _stored(hub, hub.layout.workspace, match["name"], match["version"])
    parts = [unquote(p) for p in urlsplit(version.code_uri or "").path.split("/") if p]
    if len(parts) < 2 or parts[0] != storage.account:
        raise JobFailure("CodeNotFound", f"The code asset {match['name']}:{match['version']} has a codeUri the "
                         f"sandbox cannot read: {version.code_uri!r}.")
    container, prefix = parts[1], "/".join(parts[2:])
    code_dir = workdir / "code"
    code_dir.mkdir()
    if storage.download_prefix(container, prefix, code_dir) == 0:
        raise JobFailure("CodeNotFound", f"The code asset {match['name']}:{match['version']} has no files at "
                         f"{version.code_uri}.")
    return code_dir


def _materialise_inputs(hub: Hub, storage: _DirectStorage, record: aml_jobs.JobRecord,
                        workdir: Path) -> dict[str, str]:
    """``{name: value}``: literals as given, asset inputs downloaded to a folder (its path)."""
    values: dict[str, str] = {}
    container = _datastore_container(hub, hub.layout.workspace)
    for name, item in (record.body.get("inputs") or {}).items():
        if item.get("jobInputType") == "literal":
            values[name] = str(item.get("value"))
            continue
        path = aml_jobs.resolve_asset_uri(hub, str(item.get("uri")))
        if path is None:
            raise JobFailure("UserError", f"Input '{name}': the uri {item.get('uri')} no longer resolves.")
        target = workdir / "inputs" / name
        target.mkdir(parents=True)
        if storage.download_prefix(container, path, target) == 0:
            raise JobFailure("ScriptExecution.StreamAccess.NotFound",
                             f"Input '{name}': no data at {item.get('uri')}.")
        if item.get("jobInputType") == "mlflow_model" and not (target / "MLmodel").is_file():
            raise JobFailure("UserError", f"Input '{name}' is an mlflow_model but {item.get('uri')} holds no MLmodel "
                             "file: a checkpoint that is not in MLflow format is a custom_model.")
        files = [p for p in target.rglob("*") if p.is_file()]
        single = item.get("jobInputType") == "uri_file" and len(files) == 1
        values[name] = str(files[0] if single else target)
    return values


def _prepare_outputs(record: aml_jobs.JobRecord, workdir: Path) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for name in record.body.get("outputs") or {}:
        folder = workdir / "outputs" / name
        folder.mkdir(parents=True)
        outputs[name] = folder
    return outputs


def _job_env(hub: Hub, record: aml_jobs.JobRecord, values: dict[str, str], outputs: dict[str, Path],
             workdir: Path) -> dict[str, str]:
    shims = workdir / "bin"
    shims.mkdir()
    for name in ("python", "python3"):
        (shims / name).symlink_to(sys.executable)
    env = {"PATH": f"{shims}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "AZUREML_RUN_ID": record.name, "AZUREML_ARM_SUBSCRIPTION": hub.layout.subscription_id,
           "AZUREML_ARM_RESOURCEGROUP": hub.layout.resource_group, "AZUREML_ARM_WORKSPACE_NAME": hub.layout.workspace,
           "AZUREML_CODE_ID": str(record.body.get("codeId"))}
    # The compute's managed identity, as the job's DefaultAzureCredential finds it (App Service MSI protocol), the
    # sandbox CA, and cicd-tools importable (the environment image would have it installed): what a job running
    # `cicd-tools model mirror` (aml/src/mirror) needs. The identity holds only the roles a test assigns it.
    env.update({"IDENTITY_ENDPOINT": f"{hub.arm_endpoint}/identity/{hub.layout.compute_principal}",
                "IDENTITY_HEADER": hub.identity_header, "REQUESTS_CA_BUNDLE": str(hub.info()["caBundle"]),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3]), *site.getsitepackages()])})
    for name, value in values.items():
        env[f"AZURE_ML_INPUT_{name}"] = value
    for name, path in outputs.items():
        env[f"AZURE_ML_OUTPUT_{name}"] = str(path)
    env.update({str(k): str(v) for k, v in (record.body.get("environmentVariables") or {}).items()})
    return env


def substitute(command: str, values: dict[str, str], outputs: dict[str, Path]) -> str:
    """``${{inputs.x}}`` → the input's value or folder, ``${{outputs.y}}`` → the output folder."""
    def one(match: re.Match[str]) -> str:
        if match["kind"] == "inputs":
            return values[match["name"]]
        return str(outputs[match["name"]])

    return aml_job_checks.REFERENCE_RE.sub(one, command)


def _execute(hub: Hub, storage: _DirectStorage, record: aml_jobs.JobRecord, code_dir: Path,
             values: dict[str, str], outputs: dict[str, Path], workdir: Path) -> tuple[int, bool]:
    command = substitute(str(record.body["command"]), values, outputs)
    limits = record.body.get("limits") or {}
    timeout = parse_duration(limits.get("timeout") if isinstance(limits, dict) else None)
    env = _job_env(hub, record, values, outputs, workdir)
    process = subprocess.Popen(["/bin/sh", "-c", command], cwd=code_dir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    reader = threading.Thread(target=_stream, args=(record, process), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    uploaded, next_upload = 0, time.monotonic() + LOG_UPLOAD_INTERVAL
    while process.poll() is None:
        if time.monotonic() > next_upload and len(record.log) != uploaded:
            uploaded, next_upload = len(record.log), time.monotonic() + LOG_UPLOAD_INTERVAL
            try:  # std_log.txt grows while the job runs, as jobs.stream() reads it; a miss waits for the next
                _upload_log(hub, storage, record)
            except Exception:
                log.debug("sandbox AML job %s: log upload failed", record.name, exc_info=True)
        if record.cancel.is_set():
            _kill(process)
            reader.join(5)
            raise JobCanceled()
        if time.monotonic() > deadline:
            timed_out = True
            _kill(process)
            break
        record.cancel.wait(0.05)
    reader.join(5)
    return process.wait(), timed_out


def _kill(process: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the shell and what it started
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def _stream(record: aml_jobs.JobRecord, process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        record.log.append(line)
        log.info("[aml job %s] %s", record.name, line)


def _upload_log(hub: Hub, storage: _DirectStorage, record: aml_jobs.JobRecord) -> None:
    from azure.core.exceptions import ResourceExistsError

    client = storage.service.get_container_client(ARTIFACT_CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    client.upload_blob(aml_jobs.log_blob(record.name),
                       ("\n".join(record.log) + "\n").encode(), overwrite=True)
    record.log_uploaded = True


def _upload_outputs(hub: Hub, storage: _DirectStorage, record: aml_jobs.JobRecord,
                    outputs: dict[str, Path]) -> None:
    container = _datastore_container(hub, hub.layout.workspace)
    for name, folder in outputs.items():
        item = (record.body.get("outputs") or {}).get(name) or {}
        path = aml_jobs.resolve_asset_uri(hub, str(item.get("uri") or aml_jobs.output_base(record.name, name)))
        if path is None:  # validated at PUT
            raise JobFailure("UserError", f"Output '{name}': cannot resolve {item.get('uri')}.")
        count = storage.upload_folder(container, path, folder)
        log.info("sandbox AML job %s: output %s, %d file(s) uploaded to %s", record.name, name, count, path)
