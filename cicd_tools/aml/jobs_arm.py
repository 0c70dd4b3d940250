"""Read Azure ML jobs and their outputs over plain ARM REST and blob storage (no azure.ai.ml import).

``aml verify`` needs three reads: a job (``GET {WS}/jobs/{name}``), the datastore an output lives on
(``GET {WS}/datastores/{name}``), and the evidence file a job wrote into an output (``code.json``,
read with the caller's token: CI holds a blob data role on the workspace storage, never a key).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cicd_tools.codeassets.workspace import WorkspaceCodes
from cicd_tools.support.errors import UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

# The stable api-version whose Command job body the toolkit reads (AZURE_FACTS.md §6).
JOB_API_VERSION = "2025-09-01"
EVIDENCE_FILE = "code.json"
_OUTPUT_URI_RE = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$")
_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")


@dataclass(frozen=True)
class OutputEvidence:
    """What a job's outputs say about the code it ran (``code.json``), or why nothing could be read."""

    code_hash: str | None
    source: str | None  # the output (name) the evidence came from
    note: str | None = None  # why there is no evidence (no output carries it, storage refused...)


class WorkspaceJobs(WorkspaceCodes):
    """Job and datastore reads on the workspace (shares the code-version reads and the ARM pipeline)."""

    def __enter__(self) -> WorkspaceJobs:
        return self

    def get_job(self, name: str) -> dict[str, Any]:
        """The job resource. Raises: UsageError (no such job, bad name), AzureError (classified)."""
        if not _JOB_NAME_RE.match(name):
            raise UsageError(f"{name!r} is not an Azure ML job name (letters, digits, '-', '_'; max 255)",
                             hint="Pass the job's name as `az ml job list` or the studio shows it.")
        url = f"{self.workspace.arm_endpoint}{self.workspace.path}/jobs/{name}?api-version={JOB_API_VERSION}"
        doc = self._get_json(url, what=f"reading job {name}", missing_ok=True)
        if doc is None:
            raise UsageError(f"job {name} does not exist in workspace {self.workspace.workspace}",
                             hint="Check the name (`az ml job list`), the workspace flags and CICD_WORKSPACE.",
                             code="JobNotFound")
        return doc

    def cancel_job(self, name: str) -> bool:
        """Ask Azure ML to cancel job ``name`` (``POST {WS}/jobs/{name}/cancel``, 202 + a Location to poll).

        Returns False when the job does not exist. The job then goes CancelRequested -> Canceled; read it with
        ``get_job``. Raises: UsageError (bad name), AzureError (classified).
        """
        from azure.core.exceptions import AzureError as SdkAzureError
        from azure.core.rest import HttpRequest

        from cicd_tools.codeassets.workspace import _http_error, workspace_error

        if not _JOB_NAME_RE.match(name):
            raise UsageError(f"{name!r} is not an Azure ML job name (letters, digits, '-', '_'; max 255)")
        url = f"{self.workspace.arm_endpoint}{self.workspace.path}/jobs/{name}/cancel?api-version={JOB_API_VERSION}"
        what = f"cancelling job {name}"
        try:
            response = self.send(HttpRequest("POST", url, headers={"Accept": "application/json"}), what)
        except SdkAzureError as exc:
            raise workspace_error(exc, what=what) from None
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise workspace_error(_http_error(response), what=what)
        return True

    def get_datastore(self, name: str) -> dict[str, Any] | None:
        url = (f"{self.workspace.arm_endpoint}{self.workspace.path}/datastores/{name}"
               f"?api-version={JOB_API_VERSION}")
        return self._get_json(url, what=f"reading datastore {name}", missing_ok=True)


def datastore_container_url(datastore: dict[str, Any]) -> str:
    """The blob container URL of an AzureBlob datastore.

    ``{protocol}://{account}.blob.{endpoint}/{container}``; an endpoint that is an IP address (an
    emulator such as the sandbox or Azurite) is path-style: ``{protocol}://{endpoint}/{account}/{container}``.
    """
    props = datastore.get("properties") or {}
    account, container = props.get("accountName"), props.get("containerName")
    endpoint, protocol = props.get("endpoint") or "core.windows.net", props.get("protocol") or "https"
    if not account or not container:
        raise UsageError(f"datastore {datastore.get('name')} is not an Azure Blob datastore", code="NotBlob")
    host = str(endpoint).rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(host)
        return f"{protocol}://{endpoint}/{account}/{container}"
    except ValueError:
        return f"{protocol}://{account}.blob.{endpoint}/{container}"


def read_output_evidence(jobs: WorkspaceJobs, job: dict[str, Any], credential: TokenCredential) -> OutputEvidence:
    """The ``codeHash`` the job wrote into one of its outputs' ``code.json``; a note when there is none."""
    from azure.core.exceptions import AzureError as SdkAzureError
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContainerClient

    outputs = (job.get("properties") or {}).get("outputs") or {}
    notes: list[str] = []
    for name, item in sorted(outputs.items()):
        match = _OUTPUT_URI_RE.match(str((item or {}).get("uri") or ""))
        if match is None:
            continue
        store = jobs.get_datastore(match["store"])
        if store is None:
            notes.append(f"{name}: datastore {match['store']} not found")
            continue
        blob = f"{match['path'].rstrip('/')}/{EVIDENCE_FILE}".lstrip("/")
        try:
            with ContainerClient.from_container_url(datastore_container_url(store), credential=credential) as box:
                raw = box.download_blob(blob).readall()
        except ResourceNotFoundError:
            continue
        except SdkAzureError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            notes.append(f"{name}: {first}")
            continue
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
            notes.append(f"{name}: {EVIDENCE_FILE} is not JSON")
            continue
        if isinstance(doc, dict) and isinstance(doc.get("codeHash"), str):
            return OutputEvidence(doc["codeHash"], name)
        notes.append(f"{name}: {EVIDENCE_FILE} has no codeHash")
    note = "; ".join(notes) if notes else f"no output of the job carries {EVIDENCE_FILE}"
    return OutputEvidence(None, None, note)
