"""Run real Azurite (blob only) as a child process: HTTPS, ``--oauth basic``, a temp data dir.

Azurite comes from the project's ``package.json`` (``npm ci`` puts it in ``node_modules/.bin``);
``CICD_AZURITE_BIN`` or ``PATH`` can point elsewhere for an installed toolkit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cicd_tools.sandbox.certs import CertBundle
from cicd_tools.support.errors import ConfigError, TimeoutExpired

log = logging.getLogger(__name__)

DEVSTORE_ACCOUNT = "devstoreaccount1"
DEVSTORE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def find_azurite(start: Path | None = None) -> Path:
    """Locate ``azurite-blob``: ``CICD_AZURITE_BIN``, then ``node_modules/.bin`` upwards, then PATH.

    Raises: ConfigError when Azurite is not installed.
    """
    explicit = os.environ.get("CICD_AZURITE_BIN")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"CICD_AZURITE_BIN={explicit} is not a file",
                              hint="Point it at azurite-blob (`npm install -g azurite@3.35.0` puts it on PATH), or"
                              " unset it to use the checkout's node_modules (`npm ci`).")
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    package_root = Path(__file__).resolve().parents[3]
    for folder in (here, *here.parents, package_root):
        candidate = folder / "node_modules" / ".bin" / "azurite-blob"
        if candidate.exists():
            return candidate
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    raise ConfigError(
        "Azurite is not installed (azurite-blob not found).",
        hint="Run `npm ci` in the cicd-tools checkout (or `npm install -g azurite@3.35.0`), "
        "or set CICD_AZURITE_BIN.",
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    *,
    timeout: float = 20.0,
    alive: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Block until 127.0.0.1:port accepts connections. Raises: TimeoutExpired."""
    deadline = clock() + timeout
    while clock() < deadline:
        if not alive():
            raise ConfigError(f"the process meant to listen on port {port} exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutExpired(f"nothing accepted connections on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class AzuriteProcess:
    """A running Azurite blob service."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_file: Path

    @property
    def blob_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/{DEVSTORE_ACCOUNT}"

    def connection_string(self) -> str:
        """A key-auth connection string (for tools that cannot do tokens)."""
        return (
            f"DefaultEndpointsProtocol=https;AccountName={DEVSTORE_ACCOUNT};AccountKey={DEVSTORE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate Azurite and its children; never leaves a process behind."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)


def start_azurite(
    data_dir: Path,
    certs: CertBundle,
    *,
    port: int | None = None,
    binary: Path | None = None,
    timeout: float = 30.0,
    accounts: Mapping[str, str] | None = None,
) -> AzuriteProcess:
    """Start Azurite over HTTPS with OAuth (basic) on ``port`` (a free one by default).

    ``accounts`` (name -> base64 key) replaces Azurite's account list (``AZURITE_ACCOUNTS``);
    ``devstoreaccount1`` is kept so ``connection_string()`` still works.

    Raises: ConfigError when Azurite is missing or dies; TimeoutExpired when it never listens.
    """
    exe = binary or find_azurite()
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = data_dir / "azurite.log"
    cmd = [
        str(exe),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(data_dir),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--oauth", "basic",
        "--cert", str(certs.server_cert),
        "--key", str(certs.server_key),
    ]
    env = dict(os.environ)
    if accounts:
        named = {DEVSTORE_ACCOUNT: DEVSTORE_KEY, **accounts}
        env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in named.items())
    log.debug("starting Azurite: %s", " ".join(cmd))
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=env,
        )
    azurite = AzuriteProcess(process=process, port=port, data_dir=data_dir, log_file=log_file)
    try:
        wait_for_port(port, timeout=timeout, alive=lambda: process.poll() is None)
    except Exception:
        azurite.stop()
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise ConfigError(f"Azurite did not start on port {port}. Its log ends with:\n{tail}") from None
    return azurite
