"""`make demo`: the CI flow rehearsed against the local sandbox, one real `cicd-tools` command at a time.

Each step prints, in this order: the command it runs (exactly as a pipeline step would call it), its log (what the
command writes to stderr while it works), its result (stdout), and its exit code. Everything goes to the demo's
stdout, so the order holds in a pipe and in a CI log.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cicd_tools.support.errors import ExitCode


def run(argv: Sequence[str], env: dict[str, str], *, expect: int = 0, mask: bool = False) -> str:
    """Run one cicd-tools command; echo it, its log, its result (``mask``: with secrets masked) and its exit code;
    stop the demo on an unexpected exit code."""
    print(f"\n$ cicd-tools {shlex.join(argv)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "cicd_tools.cli", *argv], env=env, capture_output=True, text=True
    )
    for text in (proc.stderr, proc.stdout):  # the log came first, while the command worked; the result last
        if mask:
            from cicd_tools.support.redact import redact

            text = redact(text)
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    note = "" if proc.returncode == expect else f" (expected {expect})"
    print(f"[exit {proc.returncode}{note}]", flush=True)
    if proc.returncode != expect:
        raise SystemExit(f"demo step failed with exit code {proc.returncode} (expected {expect})")
    return proc.stdout


def sandbox_env(state_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """What `eval "$(cicd-tools sandbox env)"` would export, as a dict."""
    out = run(["sandbox", "env", "--state-dir", str(state_dir)], base, mask=True)  # never echo the sandbox secret
    env = dict(base)
    for line in out.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def write_code(root: Path) -> tuple[Path, Path]:
    """Two small code folders, as a repository would hold them."""
    train, validate = root / "aml" / "src" / "train", root / "aml" / "src" / "validate"
    for folder, script in ((train, "train.py"), (validate, "validate.py")):
        folder.mkdir(parents=True)
        (folder / script).write_text(f"print('running {script}')\n")
        (folder / ".amlignore").write_text("__pycache__/\n*.log\n")
    return train, validate


def flow(env: dict[str, str], work: Path) -> None:
    """The CI flow, step by step, against the sandbox."""
    train, validate = write_code(work)
    run(["storage", "smoke", "--denied-budget", "0"], env, expect=int(ExitCode.AZURE))  # private storage refuses
    run(["firewall", "open", "--timeout", "60"], env)
    try:
        run(["storage", "smoke"], env)
        run(["code", "hash", str(train)], env)
        run(["code", "register", "--pointer", "--version", "1",
             "--asset", f"training-code={train}", "--asset", f"validation-code={validate}"], env)
        # Unchanged content, new requested version: the SDK returns the existing version 1.
        run(["code", "register", "--pointer", "--name", "training-code", "--path", str(train), "--version", "2"], env)
        (train / "train.py").write_text("print('running train.py, improved')\n")
        run(["code", "plan", "--name", "training-code", "--path", str(train), "--version", "3"], env)
        run(["code", "register", "--pointer", "--name", "training-code", "--path", str(train), "--version", "3"], env)
        run(["pointer", "read", "--asset", "training-code"], env)
        run(["pointer", "history", "--asset", "training-code"], env)
        run(["pointer", "rollback", "--asset", "training-code", "--to", "1"], env)
        run(["--output", "json", "pointer", "read", "--asset", "training-code", "--field", "version"], env)
    finally:
        run(["firewall", "close", "--grace", "3s"], env)  # no competitor in the demo: a short release watch
    run(["storage", "diagnose"], env)
    run(["adf", "lint", str(REPO / "adf")], env)
    whole_flow(env, work)
    misplaced_connect_via(env, work)
    cancelled_run(env)


def whole_flow(env: dict[str, str], work: Path) -> None:
    """The whole chain as one command, configured by the repository's cicd-tools.toml, with its evidence report."""
    print("\n# Publish the factory: triggered and createRun runs use the PUBLISHED definitions.", flush=True)
    run(["adf", "deploy", str(REPO / "adf")], env)
    run(["adf", "diff", str(REPO / "adf")], env)
    report = work / "evidence.json"
    config = ["--config", str(REPO / "cicd-tools.toml"), "--report", str(report)]
    print("\n# The whole chain in one command: firewall, smoke, register, pointers, ADF run (the factory reads the"
          "\n# pointers through its private endpoint and runs training then validation on AKS), verify, close:",
          flush=True)
    run(["flow", *config, "--code-version", "10"], env)
    print("\n# Again, unchanged code requested as version 11: Azure ML returns version 10, the pointer keeps it,"
          "\n# the jobs run 10 and verify proves it:", flush=True)
    print("# (its report is not printed here but by `report show`, once: the same Markdown as the flow prints)",
          flush=True)
    run(["--output", "none", "flow", *config, "--code-version", "11"], env)
    run(["report", "show", str(report)], env)
    check_agreement(report)


def check_agreement(path: Path) -> None:
    """The invariant, read back from the evidence: each asset's returned version is what its pointer holds and what
    its job ran. Stops the demo when they disagree."""
    doc = json.loads(path.read_text())
    ran = {job["codeId"] for v in doc["verify"] for job in v["jobs"] if job.get("ok")}
    print("\n# The evidence agrees (returned version = pointer = the code id the job ran):")
    for asset in doc["assets"]:
        pointer = (asset.get("pointer") or {}).get("after")
        agrees = asset["version"] == pointer and asset["assetId"] in ran
        print(f"  {asset['name']}: requested {asset['requestedVersion']}, returned {asset['version']}, "
              f"pointer {pointer}, job ran {asset['assetId'].rsplit('/', 3)[-3]}:{asset['assetId'].rsplit('/', 1)[-1]}"
              f" -> {'agrees' if agrees else 'DISAGREES'}", flush=True)
        if not agrees:
            raise SystemExit(f"demo: the evidence for {asset['name']} disagrees")


def misplaced_connect_via(env: dict[str, str], work: Path) -> None:
    """The classic mistake: `connectVia` at the activity root. ADF ignores it there, the call leaves over the public
    network, and the private storage refuses it. The linter says so before, the run table after."""
    doc = json.loads((REPO / "adf" / "pipeline" / "pl_read_pointer.json").read_text())
    doc["name"] = "pl_read_pointer_misplaced"
    read = doc["properties"]["activities"][0]
    read["connectVia"] = read["typeProperties"].pop("connectVia")
    folder = work / "misplaced" / "pipeline"
    folder.mkdir(parents=True)
    shutil.copytree(REPO / "adf" / "factory", folder.parent / "factory")  # the globals the pipeline reads
    (folder / "pl_read_pointer_misplaced.json").write_text(json.dumps(doc, indent=2))
    print("\n# connectVia moved to the activity root: the linter catches it, and the run fails as in Azure:",
          flush=True)
    run(["adf", "lint", str(folder.parent)], env, expect=int(ExitCode.FINDINGS))
    run(["adf", "deploy", str(folder.parent)], env, expect=int(ExitCode.USAGE))  # deploy refuses what lint flags
    run(["adf", "deploy", str(folder.parent), "--allow-lint-errors"], env)  # on purpose, to show the failure
    run(["adf", "run", "--pipeline", "pl_read_pointer_misplaced", "--wait", "--timeout", "60s"], env,
        expect=int(ExitCode.RUN_FAILED))


def cancelled_run(env: dict[str, str]) -> None:
    """A run that outlives its --timeout is cancelled, child runs and jobs too: nothing is left running."""
    print("\n# A run that outlives --timeout is cancelled (recursively), and the command exits 6:", flush=True)
    out = run(["--output", "json", "adf", "run", "--pipeline", "pl_train_and_validate", "--param",
               "runTag=cancelled", "--wait", "--timeout", "3s"], env, expect=int(ExitCode.TIMEOUT))
    report = json.loads(out)
    cancel = report.get("cancel") or {}
    runs = [report, *report.get("childRuns", [])]
    going = [str(r.get("runId")) for r in runs if r.get("status") not in ("Succeeded", "Failed", "Cancelled")]
    going += list(cancel.get("leftRunning") or [])
    if going or cancel.get("errors"):
        raise SystemExit(f"demo step left something running: {going} {cancel.get('errors')}")
    jobs = ", ".join(f"{j['name']} {j['status']}" for j in cancel.get("jobs", [])) or "none submitted"
    print(f"# run {report.get('status')}, {len(runs) - 1} child run(s) Cancelled, Azure ML jobs: {jobs}:"
          " nothing is left running", flush=True)


REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZUREML_", "CICD_", "IDENTITY_"))}
    with tempfile.TemporaryDirectory(prefix="cicd-demo-") as tmp:
        work = Path(tmp)
        state = work / "sandbox"
        base["CICD_FIREWALL_STATE_FILE"] = str(work / "firewall-state.json")
        # The sandbox has no slow competitor PATCHes: watch a closed rule 2 s (15 s in real CI), and let the
        # first smoke show the refusal at once instead of retrying it (30 s in real CI, where a rule can flap).
        base["CICD_FIREWALL_GRACE"] = "2s"
        run(["sandbox", "up", "--state-dir", str(state), "--propagation-delay", "2"], base)
        try:
            flow(sandbox_env(state, base), work)
        finally:
            run(["sandbox", "down", "--state-dir", str(state)], base)
    print("\ndemo finished: firewall opened and closed, code registered, the pointers name the returned versions,"
          "\nthe factory's jobs ran exactly those versions (verified), a misplaced connectVia and a timeout explained.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
