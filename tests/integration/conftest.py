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


def _stop_detached_guards(arm_endpoint: str) -> None:
    """End the firewall guards and release watchers a test's commands left running against this sandbox.

    They are detached on purpose (they outlive `firewall open` / a cancelled close, as CI needs), so within their
    grace window they would act on the next test's account state in this worker's shared sandbox.
    """
    import signal

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"cicd_tools.storage.guard_process" in cmdline and arm_endpoint.encode() in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGTERM)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


