"""Import the SDKs later steps need while `flow` waits for its firewall rule to reach the data plane.

The open step mostly sleeps between data-plane probes (the propagation delay is seconds in the sandbox and up to
minutes in Azure); importing azure-ai-ml alone takes 1.5-2 s, which `register` would otherwise spend after the
wait. A daemon thread imports the modules in that idle time.

Two threads importing at once can deadlock on the per-module import locks when both are *initialising* modules
that import each other (Python then raises ``_DeadlockError`` in one of them). So the main thread first imports
what the probe itself needs (``azure.storage.blob``, ``azure.identity``), then the thread starts and imports only
third-party SDK modules, never a ``cicd_tools`` module the main thread might be initialising. A failure in the
thread is swallowed: the step that needs the module imports it again and reports its own error. The thread is a
daemon, so a signal's prompt exit never waits for it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

PROBE_MODULES = ("azure.storage.blob", "azure.identity")


def start_prewarm(modules: Iterable[str]) -> threading.Thread | None:
    """Import ``modules`` in a daemon thread (after the probe's own modules in this thread); None if none."""
    wanted = tuple(modules)
    if not wanted:
        return None
    for name in PROBE_MODULES:
        importlib.import_module(name)

    def run() -> None:
        for name in wanted:
            try:
                importlib.import_module(name)
            except BaseException as exc:  # the step that needs it imports it again and says what failed
                log.debug("pre-import of %s failed: %s", name, exc)
                return

    thread = threading.Thread(target=run, name="cicd-tools-prewarm", daemon=True)
    thread.start()
    return thread


def modules_for(steps: Iterable[str]) -> tuple[str, ...]:
    """The SDK modules the enabled later steps import that nothing before the open has imported.

    Only azure-ai-ml (``register``, ``model-mirror``): azure-mgmt-datafactory is already loaded by the read-only
    readiness checks that precede the open whenever a factory is configured.
    """
    return ("azure.ai.ml", "azure.ai.ml.entities") if set(steps) & {"register", "model-mirror"} else ()
