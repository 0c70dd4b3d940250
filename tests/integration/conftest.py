"""Integration fixtures: real Azurite over HTTPS (shared key only), and the whole sandbox cloud, shared by the run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cicd_tools.sandbox.certs import CertBundle, make_certs
from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.sandbox.storage.azurite import AzuriteProcess, start_azurite


@dataclass(frozen=True)
class AzuriteHandle:
    process: AzuriteProcess
    certs: CertBundle

    @property
    def blob_endpoint(self) -> str:
        return self.process.blob_endpoint

    def connection_string(self) -> str:
        return self.process.connection_string()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteHandle]:
    """Azurite on a free port, HTTPS with a throwaway CA, a random account key, a temp data dir.

    It takes no tokens (``storage/azurite.py``): reach it with ``connection_string()``; the token path is the
    sandbox's blob front (the ``sandbox`` fixture)."""
    root = tmp_path_factory.mktemp("azurite")
    certs = make_certs(root / "certs")
    process = start_azurite(root / "data", certs)
    try:
        yield AzuriteHandle(process, certs)
    finally:
        process.stop()


@pytest.fixture
def trust_azurite(azurite: AzuriteHandle, monkeypatch: pytest.MonkeyPatch) -> AzuriteHandle:
    """Make azure-core's requests transport trust the sandbox CA for this test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite.certs.ca_cert))
    return azurite


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The in-process sandbox (ARM, identity, blob front + Azurite), propagation delay 0.3 s.

    The handle offers ``arm_endpoint``, ``ca_bundle``, ``subscription_id``, ``resource_group``,
    ``storage_account``, ``blob_endpoint`` (agent origin), ``private_blob_endpoint``, ``echo_urls``,
    ``control`` (a ``ControlClient``) and ``env()``. Use ``sandbox_env`` to get its variables and a reset.
    """
    box = Sandbox(tmp_path_factory.mktemp("sandbox"), propagation_delay=0.3)
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The sandbox's variables (what `cicd-tools sandbox env` prints) set for this test; state reset after."""
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield sandbox
    finally:
        _stop_detached_guards(sandbox.arm_endpoint)
        sandbox.control.reset()


def _stop_detached_guards(arm_endpoint: str, wait: float = 10.0) -> None:
    """End the firewall guards and release watchers a test's commands left running against this sandbox.

    They are detached on purpose (they outlive `firewall open` / a cancelled close, as CI needs), so within their
    grace window they would act on the next test's account state in this worker's shared sandbox. They are waited
    for (SIGKILL after ``wait`` s): a watcher still finishing a PATCH computed from an old read would otherwise land
    it after the reset, replacing the next test's IP rules with its stale list (a 403 in the middle of a flow).
    """
    import signal
    import time

    pids = [pid for pid, cmdline in _processes() if b"cicd_tools.storage.guard_process" in cmdline
            and arm_endpoint.encode() in cmdline]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _processes() -> Iterator[tuple[int, bytes]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(entry.name), (entry / "cmdline").read_bytes()


def _alive(pid: int) -> bool:
    """Still running (a zombie whose parent has not reaped it has stopped acting)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


