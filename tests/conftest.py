"""Test-wide guards: no real Azure, no leaked configuration."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# CI must not fail on an example nobody has seen before: there the property tests replay a fixed sequence (new
# findings come from local runs, which stay random and keep Hypothesis's example database).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

_STRIP_PREFIXES = (
    "AZURE_", "AZUREML_", "ARM_CLOUD_", "CICD_", "MSI_", "IDENTITY_", "GITHUB_", "TF_BUILD", "BUILD_", "SYSTEM_",
    "AZURESUBSCRIPTION_", "ACTIONS_ID_TOKEN_",  # the runners' federation variables (credentials.py reads them)
)


@pytest.fixture(autouse=True)
def _no_real_azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Strip AZURE_*, CICD_*, identity and CI variables so no test can reach or mimic real Azure."""
    for name in list(os.environ):
        if name.startswith(_STRIP_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    # Any attempt to reach the public cloud fails fast instead of hanging on a closed network.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The sandbox's PATCHes land at once and its rules do not flap unless a test asks: the production defaults
    # (watch a closed rule for 15 s, retry a firewall refusal for 30 s) would only slow every test that closes a
    # rule or expects a refusal. Tests of those behaviours pass their own values.
    monkeypatch.setenv("CICD_FIREWALL_GRACE", "1s")
    monkeypatch.setenv("CICD_DENIED_BUDGET", "2s")
    yield


_LOGGERS = ("", "cicd_tools", "azure", "azure.identity")


@pytest.fixture(autouse=True)
def _logger_levels() -> Iterator[None]:
    """`main(...)` sets logger levels for its run (``--only-show-errors`` sets ``cicd_tools`` to ERROR): restore
    them, so a later test's ``caplog`` sees the INFO records it asserts on whatever ran before it."""
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first (stable order otherwise): with ``pytest -n``, a long test started last
    would leave the other workers idle while it runs."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
