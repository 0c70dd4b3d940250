"""Run real Azurite (blob only) as a child process: HTTPS, shared key and SAS only, a temp data dir.

Azurite listens on 127.0.0.1, where any local user can reach its port, so it is started so that nothing reaches
its data without a secret of this start:

- no ``--oauth``: Azurite does not check a bearer token's signature (AZURE_FACTS.md §3), so it takes none; a
  bearer request answers 403 ``AuthorizationFailure``. The sandbox's blob front checks tokens itself and
  re-signs what it admits with the account key (``storage.resign``);
- its accounts (``AZURITE_ACCOUNTS``) have random keys: the sandbox's derive from its secret, a standalone
  Azurite gets ``devstoreaccount1`` with a new random key (never the published one), kept in ``accounts``;
- Azurite derives user delegation keys from a constant published in its source (so a user delegation SAS could
  be forged for any account); a preload (``node --require``) replaces that constant with ``delegation_key``
  before Azurite loads, and refuses to start Azurite when it cannot.

Azurite comes from the project's ``package.json`` (``npm ci`` puts it in ``node_modules/.bin``);
``CICD_AZURITE_BIN`` or ``PATH`` can point elsewhere for an installed toolkit.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cicd_tools.sandbox.certs import CertBundle
from cicd_tools.support.errors import ConfigError, TimeoutExpired

log = logging.getLogger(__name__)

DEVSTORE_ACCOUNT = "devstoreaccount1"  # a standalone Azurite's account name (its key is random, not Azurite's)
DELEGATION_KEY_ENV = "CICD_AZURITE_DELEGATION_KEY"  # read (and removed from the environment) by the preload
PRELOAD = """\
'use strict';
// cicd-tools: replace Azurite's published user delegation key constant with this start's secret key.
const fs = require('fs');
const path = require('path');
const key = process.env.__ENV__;
delete process.env.__ENV__;
if (!key) { throw new Error('cicd-tools: __ENV__ is not set'); }
const constants = path.join(path.dirname(fs.realpathSync(process.argv[1])), 'utils', 'constants.js');
const loaded = require(constants);
if (typeof loaded.USERDELEGATIONKEY_BASIC_KEY !== 'string') {
  throw new Error('cicd-tools: no USERDELEGATIONKEY_BASIC_KEY in ' + constants + ' (an Azurite other than 3.35?)');
}
loaded.USERDELEGATIONKEY_BASIC_KEY = key;
if (loaded.USERDELEGATIONKEY_BASIC_KEY !== key) { throw new Error('cicd-tools: the constant cannot be replaced'); }
""".replace("__ENV__", DELEGATION_KEY_ENV)


def random_key() -> str:
    """A new base64 account key (64 random bytes, the size of Azure's)."""
    return base64.b64encode(secrets.token_bytes(64)).decode()


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
    accounts: dict[str, str] = field(default_factory=dict, repr=False)  # name -> base64 key (secrets)

    @property
    def account(self) -> str:
        """The first account (``devstoreaccount1`` for a standalone Azurite)."""
        return next(iter(self.accounts), DEVSTORE_ACCOUNT)

    @property
    def blob_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/{self.account}"

    def connection_string(self) -> str:
        """A key-auth connection string for the first account (Azurite takes no tokens)."""
        return (
            f"DefaultEndpointsProtocol=https;AccountName={self.account};AccountKey={self.accounts[self.account]};"
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
    delegation_key: str | None = None,
) -> AzuriteProcess:
    """Start Azurite over HTTPS, shared key and SAS only, on ``port`` (a free one by default).

    ``accounts`` (name -> base64 key) is Azurite's whole account list (``AZURITE_ACCOUNTS``); without it,
    ``devstoreaccount1`` with a new random key. Azurite's published ``devstoreaccount1`` key is never accepted.
    ``delegation_key`` replaces Azurite's published user delegation key constant (a new random one by default).

    A free port is only free until someone takes it (parallel test workers start several sandboxes at once):
    when Azurite finds its chosen port taken, it is started again on another one.

    Raises: ConfigError when Azurite is missing or dies; TimeoutExpired when it never listens.
    """
    exe = binary or find_azurite()
    named = dict(accounts) if accounts else {DEVSTORE_ACCOUNT: random_key()}
    secret = _Secrets(named, delegation_key or random_key())
    if port is not None:
        return _start(exe, data_dir, certs, port, timeout, secret)
    attempts = 3
    while True:
        attempts -= 1
        try:
            return _start(exe, data_dir, certs, free_port(), timeout, secret)
        except ConfigError as err:
            if attempts == 0 or "EADDRINUSE" not in err.message:
                raise
            log.debug("Azurite's port was taken meanwhile; starting it on another one")


@dataclass(frozen=True)
class _Secrets:
    accounts: dict[str, str] = field(repr=False)
    delegation_key: str = field(repr=False)


def _start(exe: Path, data_dir: Path, certs: CertBundle, port: int, timeout: float, secret: _Secrets) -> AzuriteProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = data_dir / "azurite.log"
    preload = data_dir / "cicd-preload.js"
    preload.write_text(PRELOAD)
    cmd = [
        str(exe),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(data_dir),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--cert", str(certs.server_cert),
        "--key", str(certs.server_key),
    ]
    env = dict(os.environ)
    env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in secret.accounts.items())
    env[DELEGATION_KEY_ENV] = secret.delegation_key
    env["NODE_OPTIONS"] = " ".join([env.get("NODE_OPTIONS", ""), "--require", json.dumps(str(preload))]).strip()
    log.debug("starting Azurite: %s", " ".join(cmd))
    with open(log_file, "ab") as out:
        offset = out.tell()
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=env,
        )
    azurite = AzuriteProcess(process=process, port=port, data_dir=data_dir, log_file=log_file,
                             accounts=dict(secret.accounts))

    def this_start() -> str:
        with open(log_file, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    try:
        _wait_listening(port, this_start, timeout=timeout, alive=lambda: process.poll() is None)
    except Exception:
        azurite.stop()
        raise ConfigError(f"Azurite did not start on port {port}. Its log ends with:\n{this_start()[-2000:]}") from None
    return azurite


def _wait_listening(port: int, output: Callable[[], str], *, timeout: float, alive: Callable[[], bool]) -> None:
    """Block until Azurite says it listens on ``port``. Raises: TimeoutExpired, ConfigError (it exited).

    Its own words, not a connection: another process that holds the port (a free port is free only until
    someone takes it) would accept the connection while this Azurite exits with EADDRINUSE.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"listens on https://127.0.0.1:{port}" in output():
            return
        if not alive():
            raise ConfigError(f"Azurite exited during start-up on port {port}")
        time.sleep(0.05)
    raise TimeoutExpired(f"Azurite did not say it listens on 127.0.0.1:{port} within {timeout:.0f} s")
