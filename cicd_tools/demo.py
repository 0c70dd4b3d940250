"""`make demo`: the CI flow rehearsed against the local sandbox, one real `cicd-tools` command at a time.

Each step prints the command it runs, exactly as a pipeline step would call it, then its output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cicd_tools.errors import ExitCode


def run(argv: Sequence[str], env: dict[str, str], *, expect: int = 0) -> str:
    """Run one cicd-tools command, echo it and its output; stop the demo on an unexpected exit code."""
    print(f"\n$ cicd-tools {shlex.join(argv)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "cicd_tools.cli", *argv], env=env, capture_output=True, text=True
    )
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != expect:
        raise SystemExit(f"demo step failed with exit code {proc.returncode} (expected {expect})")
    return proc.stdout


def sandbox_env(state_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """What `eval "$(cicd-tools sandbox env)"` would export, as a dict."""
    out = run(["sandbox", "env", "--state-dir", str(state_dir)], base)
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
    run(["storage", "smoke"], env, expect=int(ExitCode.AZURE))  # private storage refuses the agent
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


REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZUREML_", "CICD_", "IDENTITY_"))}
    with tempfile.TemporaryDirectory(prefix="cicd-demo-") as tmp:
        work = Path(tmp)
        state = work / "sandbox"
        base["CICD_FIREWALL_STATE_FILE"] = str(work / "firewall-state.json")
        run(["sandbox", "up", "--state-dir", str(state), "--propagation-delay", "2"], base)
        try:
            flow(sandbox_env(state, base), work)
        finally:
            run(["sandbox", "down", "--state-dir", str(state)], base)
    print("\ndemo finished: firewall opened and closed, code registered, the pointer names the returned version.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
