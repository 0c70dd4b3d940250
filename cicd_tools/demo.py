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

WS_ID = (
    "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-mlops-sandbox"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-sandbox"
)


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


def pointer_demo(env: dict[str, str]) -> None:
    """Publish two versions, read the pointer, show history, roll back, and show a refused read."""
    asset = "training-code"
    for version in ("1", "2"):
        run(["pointer", "write", "--asset", asset, "--version", version, "--requested-version", version,
             "--asset-id", f"{WS_ID}/codes/{asset}/versions/{version}"], env)
    run(["pointer", "read", "--asset", asset], env)
    run(["--output", "json", "pointer", "read", "--asset", asset, "--field", "version"], env)
    run(["pointer", "history", "--asset", asset], env)
    run(["pointer", "rollback", "--asset", asset, "--to", "1"], env)
    run(["pointer", "history", "--asset", asset], env)
    run(["pointer", "read", "--asset", "no-such-asset"], env, expect=int(ExitCode.CONTRACT))


def main() -> int:
    from azure.storage.blob import BlobServiceClient

    from cicd_tools.sandbox.azurite import start_azurite
    from cicd_tools.sandbox.certs import make_certs

    with tempfile.TemporaryDirectory(prefix="cicd-demo-") as tmp:
        root = Path(tmp)
        certs = make_certs(root / "certs")
        print("starting Azurite (HTTPS, OAuth) for the demo ...", flush=True)
        azurite = start_azurite(root / "azurite", certs)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "CICD_"))}
            env |= {
                "REQUESTS_CA_BUNDLE": str(certs.ca_cert),
                "CICD_AUTH_MODE": "key",
                "CICD_STORAGE_CONNECTION_STRING": azurite.connection_string(),
            }
            os.environ["REQUESTS_CA_BUNDLE"] = str(certs.ca_cert)
            BlobServiceClient.from_connection_string(azurite.connection_string()).create_container("ml-globals")
            pointer_demo(env)
        finally:
            azurite.stop()
    print("\ndemo finished: the pointer contract works end to end against real Azurite.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
