"""`cicd-tools flow` against the sandbox: the first half of the chain for real (open → smoke → register →
pointers → close), with the evidence report checked against what Azure ML and the pointer blob hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from cicd_tools.cli.main import main
from cicd_tools.report.model import EvidenceReport
from cicd_tools.sandbox.runtime import Sandbox
from tests.integration.flow_configs import FIRST_HALF, whole_chain


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    for folder, script in (("train", "train.py"), ("validate", "validate.py")):
        (root / "src" / folder).mkdir(parents=True)
        (root / "src" / folder / script).write_text(f"print('{folder} {request.node.name}')\n")
    suffix = str(abs(hash(request.node.name)) % 10**8)
    (root / "cicd-tools.toml").write_text(FIRST_HALF.format(train=f"train-{suffix}", validate=f"validate-{suffix}"))
    monkeypatch.chdir(root)
    monkeypatch.setenv("CICD_FIREWALL_STATE_FILE", str(tmp_path / "fw-state.json"))
    return root


def rules(sb: Sandbox) -> list[str]:
    """The agent's IP rules on the account: a flow opens (and must close) only those. Other tests of this worker's
    sandbox may leave a detached watcher acting on other IPs for its grace window; that is not this test's rule."""
    acls = sb.control.account()["properties"]["networkAcls"]
    return [r["value"] for r in acls["ipRules"] if r["value"] == sb.agent_ip]


def flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--output", "json", "--ci", "plain", "flow", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def pointer_doc(sb: Sandbox, asset: str) -> dict[str, Any]:
    sb.control.set_account_properties(network_acls={"ipRules": [{"value": "52.151.10.20", "action": "Allow"}]})
    service = BlobServiceClient(sb.private_blob_endpoint, credential=ManagedIdentityCredential())
    raw = service.get_blob_client("ml-globals", f"code-assets/{asset}/latest.json").download_blob().readall()
    return dict(json.loads(raw))


def test_flow_first_half_registers_publishes_and_closes_with_evidence(
    sandbox_env: Sandbox, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = rules(sandbox_env)
    rc, doc, err = flow(capsys, "--code-version", "1")
    assert rc == 0, err
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    assert report.status == "succeeded" and doc["status"] == "succeeded"
    statuses = {s.name: s.status for s in report.steps}
    assert statuses == {"firewall-open": "ok", "smoke": "ok", "register": "ok", "pointers": "ok",
                        "adf-run": "skipped", "aml-verify": "skipped", "model-mirror": "skipped",
                        "firewall-close": "ok"}
    fw = report.firewall
    assert fw is not None and fw.ip == "52.151.10.20" and fw.opened and fw.closed and fw.ruleRemoved
    assert rules(sandbox_env) == before  # the rule is gone again
    assert report.smoke is not None and report.smoke.usable
    assert [(a.requestedVersion, a.version, a.dedup) for a in report.assets] == [("1", "1", False)] * 2
    for asset in report.assets:
        assert asset.pointer is not None and asset.pointer.before is None and asset.pointer.after == "1"
        published = pointer_doc(sandbox_env, asset.name)
        assert (published["version"], published["assetId"]) == ("1", asset.assetId)
        assert asset.pointer.historyBlob and asset.pointer.historyBlob.startswith(f"code-assets/{asset.name}/history/")

    # Unchanged code requested as version 2: Azure ML returns version 1, and the pointer keeps it.
    sandbox_env.control.set_account_properties(network_acls={"ipRules": []})
    rc, doc, err = flow(capsys, "--code-version", "2")
    assert rc == 0, err
    again = EvidenceReport.model_validate(doc)
    assert [(a.requestedVersion, a.version, a.dedup) for a in again.assets] == [("2", "1", True)] * 2
    assert all(a.pointer and (a.pointer.before, a.pointer.after) == ("1", "1") for a in again.assets)


def test_flow_closes_the_rule_when_a_later_step_fails_and_records_the_error(
    sandbox_env: Sandbox, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = rules(sandbox_env)
    # The pipeline identity loses its data role after the rule is opened: smoke fails with a classified 403.
    sandbox_env.control.remove_role("ci-pipeline", "Storage Blob Data Contributor")
    rc, _doc, err = flow(capsys, "--code-version", "1")
    assert rc == 3, err
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    steps = {s.name: s for s in report.steps}
    assert steps["firewall-open"].status == "failed" or steps["smoke"].status == "failed"
    assert steps["register"].status == "not-run" and steps["firewall-close"].status == "ok"
    failed = next(s for s in report.steps if s.status == "failed")
    assert failed.error is not None and failed.error.code == "AuthorizationPermissionMismatch"
    assert rules(sandbox_env) == before
    assert report.status == "failed" and report.exitCode == 3


def test_sigterm_while_a_pointer_is_published_closes_the_rule_and_exits_130(
    sandbox_env: Sandbox, repo: Path, tmp_path: Path
) -> None:
    """CI cancels the job while the rule is open and a pointer write is in flight (its blob read held 20 s)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    before = rules(sandbox_env)
    fault = sandbox_env.control.add_fault(service="blob", path=r".*/code-assets/.*/latest\.json.*", kind="delay",
                                          delay=20, count=1)
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "flow", "--code-version", "1"],
                            cwd=repo, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(f.id == fault.id and f.hits for f in sandbox_env.control.faults()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the flow ended before the pointer write was under way"
        assert rules(sandbox_env) != before  # the rule is open at this moment
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        sandbox_env.control.clear_faults()
    assert proc.returncode == 130, err[-3000:]
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    steps = {s.name: s.status for s in report.steps}
    assert (steps["register"], steps["pointers"], steps["firewall-close"]) == ("ok", "interrupted", "ok")
    assert [a.version for a in report.assets] == ["1", "1"]  # what registration returned is on record
    assert report.status == "interrupted" and report.firewall is not None and report.firewall.ruleRemoved
    assert rules(sandbox_env) == before


def test_sigterm_during_the_propagation_poll_leaves_the_rollbacks_facts_in_the_report(
    sandbox_env: Sandbox, repo: Path
) -> None:
    """CI cancels the job while open waits for the new rule to reach the data plane (issue 18, case 3): the
    report's firewall section says what the rollback removed, not what the later close no longer finds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    before = rules(sandbox_env)
    sandbox_env.control.set_propagation_delay(60)  # the probe is refused for a minute: open keeps polling
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "flow", "--code-version", "1"],
                            cwd=repo, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None and rules(sandbox_env) == before:
            time.sleep(0.1)
        assert proc.poll() is None and "52.151.10.20" in rules(sandbox_env), "open never added the rule"
        time.sleep(1.0)  # well inside the propagation poll
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    steps = {s.name: s.status for s in report.steps}
    assert (steps["firewall-open"], steps["register"], steps["firewall-close"]) == ("interrupted", "not-run", "ok")
    fw = report.firewall
    assert fw is not None and fw.opened is False
    assert (fw.ip, fw.ruleAdded, fw.ruleRemoved) == ("52.151.10.20", True, True), fw
    assert fw.rollbackNote is not None and "52.151.10.20" in fw.rollbackNote
    end = time.monotonic() + 30  # the release watcher settles what the quick rollback started
    while rules(sandbox_env) != before and time.monotonic() < end:
        time.sleep(0.2)
    assert rules(sandbox_env) == before




def test_sigterm_while_the_adf_run_waits_cancels_the_run_and_closes_the_rule(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CI cancels the job during `adf run --wait`: the run (and its child runs) end Cancelled, the rule is gone, and
    the run id was on record before the signal."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from azure.mgmt.datafactory import DataFactoryManagementClient

    repo_root = Path(__file__).resolve().parents[2]
    root = tmp_path / "chain"
    (root / ".git").mkdir(parents=True)
    shutil.copytree(repo_root / "aml", root / "aml")
    (root / "cicd-tools.toml").write_text(whole_chain("cancel", poll=30))
    monkeypatch.setenv("CICD_FIREWALL_STATE_FILE", str(tmp_path / "fw-state.json"))
    assert main(["adf", "deploy", str(repo_root / "adf")]) == 0
    capsys.readouterr()
    before = rules(sandbox_env)
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "flow", "--code-version", "1"],
                            cwd=root, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # the training job was submitted: the run is in its (30 s) poll wait
            if any(e["method"] == "PUT" and "/jobs/train-cancel-" in e["path"] for e in sandbox_env.state.requests()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the flow ended before the ADF run was waiting:\n" + proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    report = EvidenceReport.model_validate_json((root / "out" / "evidence.json").read_text())
    run_id = report.adfRuns[0].runId
    assert run_id, "the run id reached the report before the signal"
    steps = {s.name: s.status for s in report.steps}
    assert steps["adf-run"] == "interrupted" and steps["firewall-close"] == "ok", (report.steps, err[-3000:])
    assert rules(sandbox_env) == before
    arm = sandbox_env.arm_endpoint
    from azure.identity import ManagedIdentityCredential as Credential

    client = DataFactoryManagementClient(Credential(), sandbox_env.subscription_id, base_url=arm,
                                         credential_scopes=[f"{arm}/.default"])
    with client:
        run = client.pipeline_runs.get(sandbox_env.resource_group, "adf-sandbox", run_id)
        children = [a.output["pipelineRunId"] for a in client.activity_runs.query_by_pipeline_run(
            sandbox_env.resource_group, "adf-sandbox", run_id,
            {"lastUpdatedAfter": "2020-01-01T00:00:00Z", "lastUpdatedBefore": "2100-01-01T00:00:00Z"}).value
            if a.activity_type == "ExecutePipeline" and isinstance(a.output, dict) and a.output.get("pipelineRunId")]
        statuses = [run.status] + [client.pipeline_runs.get(sandbox_env.resource_group, "adf-sandbox", c).status
                                   for c in children]
    assert statuses[0] == "Cancelled" and children and all(s == "Cancelled" for s in statuses)


def test_the_whole_chain_with_a_failing_model_registry_succeeds_and_reports_the_mirror_failure(
    sandbox_env: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off the critical path: the registry answers 503 to every model call, the flow still exits 0 (the jobs ran the
    published versions), and the evidence report carries the mirror's failure and its cause."""
    import shutil

    repo_root = Path(__file__).resolve().parents[2]
    root = tmp_path / "chain"
    (root / ".git").mkdir(parents=True)
    shutil.copytree(repo_root / "aml", root / "aml")
    config = whole_chain("mirror", mirror=True)
    (root / "cicd-tools.toml").write_text(config)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CICD_FIREWALL_STATE_FILE", str(tmp_path / "fw-state.json"))
    assert main(["adf", "deploy", str(repo_root / "adf")]) == 0
    capsys.readouterr()
    before = rules(sandbox_env)
    sandbox_env.control.add_fault(service="arm", path=r".*/models(/|\?|$).*", status=503, count=None)
    code, _doc, err = flow(capsys, "--code-version", "1")
    sandbox_env.control.clear_faults()
    assert code == 0, err[-3000:]
    report = EvidenceReport.model_validate_json((root / "out" / "evidence.json").read_text())
    assert report.status == "succeeded" and all(v.ok for v in report.verify)
    mirrored = report.mirror[0]
    assert mirrored.ok is False and mirrored.modelVersion is None
    assert mirrored.error is not None and mirrored.warning is not None
    assert "HTTP 503" in mirrored.error.message and "ServerBusy" in mirrored.error.message  # the cause, as injected
    assert mirrored.codeId is not None and mirrored.codeId.endswith("/codes/training-code/versions/1")  # lineage
    assert {s.name: s.status for s in report.steps}["model-mirror"] == "ok"
    assert rules(sandbox_env) == before


def test_sigterm_while_an_upload_hangs_exits_130_at_once_with_the_finished_registration_on_record(
    sandbox_env: Sandbox, repo: Path
) -> None:
    """Issue 18, case 2: a signal during `register` of two assets, one of whose uploads hangs for a minute. The flow
    does not wait for the hung upload (exit 130 long before it could end), the rule is removed, and the asset that
    Azure ML did register is in the report with its version."""
    import os
    import signal
    import subprocess
    import sys
    import time

    before = rules(sandbox_env)
    fault = sandbox_env.control.add_fault(service="blob", path=r".*/code-[0-9a-f]+/validate/validate\.py.*",
                                          kind="delay", delay=60, count=None)
    proc = subprocess.Popen([sys.executable, "-m", "cicd_tools.cli", "--ci", "plain", "flow", "--code-version", "1"],
                            cwd=repo, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(f.id == fault.id and f.hits for f in sandbox_env.control.faults()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the flow ended before the upload was under way"
        time.sleep(3)  # the other asset's registration has time to answer
        proc.send_signal(signal.SIGTERM)
        # the held upload answers after 60 s: a flow that waited for it could not end within this timeout
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sandbox_env.control.clear_faults()
    assert proc.returncode == 130, err[-3000:]
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    steps = {s.name: s.status for s in report.steps}
    assert steps["register"] == "interrupted" and steps["firewall-close"] == "ok"
    registered = {a.name: a.version for a in report.assets if a.version}
    assert [name for name in registered if name.startswith("train-")], report.assets  # the finished one is on record
    assert report.status == "interrupted" and rules(sandbox_env) == before


def test_a_pipeline_missing_from_the_published_factory_is_refused_before_anything_changes(
    sandbox_env: Sandbox, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20 case 2: the flow opened the rule, registered and moved the pointers, then failed on createRun with
    `FactoryNotFound` although the factory exists. Now it reads first and changes nothing."""
    config = repo / "cicd-tools.toml"
    config.write_text(config.read_text().replace("[adf]\nenabled = false\n", "")
                      .replace('[azure]\n', '[azure]\nfactory = "adf-sandbox"\n')
                      + '\n[[adf.pipelines]]\nname = "pl_not_published"\n')
    before = rules(sandbox_env)
    seen = len(sandbox_env.state.requests())
    rc, doc, err = flow(capsys, "--code-version", "1")
    assert rc == 2, err
    text = json.dumps(doc) + err  # the one JSON document on stdout, the log on stderr
    assert "PipelineNotFound" in text and "FactoryNotFound" not in text
    assert "cicd-tools adf deploy adf/" in text
    report = EvidenceReport.model_validate_json((repo / "out" / "evidence.json").read_text())
    assert {s.status for s in report.steps} == {"not-run"} and report.exitCode == 2
    assert rules(sandbox_env) == before
    writes = [e for e in sandbox_env.state.requests()[seen:] if e["method"] not in ("GET", "HEAD")]
    assert writes == [], writes  # read-only: no rule, no registration, no pointer, no run
