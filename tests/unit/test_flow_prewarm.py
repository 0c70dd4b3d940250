"""The flow's pre-import of later steps' SDKs during the propagation wait (cicd_tools/flow/prewarm.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cicd_tools.flow.prewarm import PROBE_MODULES, modules_for, start_prewarm


def test_the_costly_sdks_are_chosen_by_the_enabled_steps() -> None:
    assert modules_for([]) == ()
    assert "azure.ai.ml" in modules_for(["register"]) and "azure.mgmt.datafactory" not in modules_for(["register"])
    assert modules_for(["adf-run", "aml-verify"]) == ()  # the readiness checks before the open load datafactory
    assert "azure.ai.ml" in modules_for(["model-mirror"])


def test_the_modules_are_imported_in_a_daemon_thread_after_the_probes_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prewarm_target_mod.py").write_text("import threading\nTHREAD = threading.current_thread().name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "prewarm_target_mod", raising=False)
    thread = start_prewarm(["prewarm_target_mod"])
    assert thread is not None and thread.daemon
    thread.join(10)
    assert all(name in sys.modules for name in PROBE_MODULES)  # imported first, in the caller's thread
    assert sys.modules["prewarm_target_mod"].THREAD == "cicd-tools-prewarm"


def test_a_failing_import_is_swallowed_and_stops_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prewarm_broken_mod.py").write_text("raise RuntimeError('broken on import')\n")
    (tmp_path / "prewarm_after_mod.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("prewarm_broken_mod", "prewarm_after_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    errors: list[BaseException] = []
    monkeypatch.setattr("threading.excepthook", lambda args: errors.append(args.exc_value))
    thread = start_prewarm(["prewarm_broken_mod", "prewarm_after_mod"])
    assert thread is not None
    thread.join(10)
    assert errors == [] and "prewarm_after_mod" not in sys.modules


def test_nothing_to_import_starts_no_thread() -> None:
    assert start_prewarm([]) is None
