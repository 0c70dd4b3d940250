"""The detached firewall guard: a small process that ``firewall open`` starts and ``firewall close`` stops.

CI runs ``open`` and ``close`` as separate steps, so nothing of ours runs in between to defend the rule
against a competitor's stale PATCH (``storage/guard.py``). This process does: in ``hold`` mode it
re-reads the account every few seconds and repairs our rule and lease tag, until ``close`` stops it
(SIGTERM, pid file beside the state file), the state file says the lease is no longer open, or the
lease expires. In ``release`` mode (started when a cancel or a timeout cut a rollback short) it keeps
removing the rule and tag for the grace window. It is killed with the job like any process the job
started, and it logs to ``firewall-guard-<leaseId>.log`` beside the state file.

Run as ``python -m cicd_tools.storage.guard_process SPEC_JSON`` (never by hand).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.support.bounded import InputRefused, load_json_bounded

log = logging.getLogger("cicd_tools.storage.guard")

PID_PREFIX = "firewall-guard-"


@dataclass(frozen=True)
class GuardSpec:
    """Everything the detached process needs (credentials come from the inherited environment)."""

    mode: str  # hold | release
    account_id: str
    lease_id: str
    ip: str
    expires_at: str
    preexisting: bool
    arm_endpoint: str
    state_file: str
    interval: float
    grace: float
    renew_by: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> GuardSpec:
        return cls(**json.loads(text))


def pid_path(state_file: str | Path, lease_id: str) -> Path:
    return Path(state_file).parent / f"{PID_PREFIX}{lease_id}.json"


def spawn(spec: GuardSpec) -> int:
    """Start the detached process; returns its pid (recorded in the pid file for ``close``)."""
    folder = Path(spec.state_file).parent
    folder.mkdir(parents=True, exist_ok=True)
    logfile = folder / f"{PID_PREFIX}{spec.lease_id}.log"
    kwargs: dict[str, Any] = {}
    if os.name == "nt":  # pragma: no cover - exercised on Windows agents only
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True  # a Ctrl-C in the step's terminal is not ours to receive
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cicd_tools.storage.guard_process", spec.to_json()],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
            **kwargs,
        )
    record = {"pid": proc.pid, "mode": spec.mode, "leaseId": spec.lease_id, "accountId": spec.account_id,
              "log": str(logfile)}
    if spec.mode == "hold":
        pid_path(spec.state_file, spec.lease_id).write_text(json.dumps(record), encoding="utf-8")
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():  # Linux: make sure the pid was not reused by something else
        return b"guard_process" in proc.read_bytes() or b"_firewall_guard" in proc.read_bytes()
    return True


def stop(state_file: str | Path, lease_id: str, *, wait: float = 3.0) -> int | None:
    """Stop the hold guard of ``lease_id`` (SIGTERM, then wait); returns its pid if one was running."""
    path = pid_path(state_file, lease_id)
    try:
        pid = int(load_json_bounded(path, cap=64 * 1024)["pid"])
    except (OSError, ValueError, KeyError, TypeError, InputRefused):
        return None
    running = _alive(pid)
    if running:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
    with contextlib.suppress(OSError):
        path.unlink()
    return pid if running else None


def _state_phase(state_file: str, account_id: str) -> str | None:
    from cicd_tools.storage.leases import StateFile

    try:
        entry = StateFile(Path(state_file)).entries().get(account_id.lower())
    except Exception:
        return None
    return entry.phase if entry else None


def run(spec: GuardSpec) -> int:
    from cicd_tools.settings.resolve import Settings
    from cicd_tools.storage.arm import AccountRef, accounts_api
    from cicd_tools.storage.guard import RuleGuard, watch_release
    from cicd_tools.storage.lease_tags import Lease, parse_iso
    from cicd_tools.storage.mgmt import mgmt_client

    parts = spec.account_id.strip("/").split("/")
    ref = AccountRef(parts[1], parts[3], parts[-1])
    settings = Settings.from_env(subscription_id=ref.subscription_id, arm_endpoint=spec.arm_endpoint)
    api = accounts_api(mgmt_client(settings))
    renew_by = parse_iso(spec.renew_by) if spec.renew_by else None
    lease = Lease(spec.lease_id, spec.ip, parse_iso(spec.expires_at), spec.preexisting, renew_by)
    if spec.mode == "release":
        removed = watch_release(api, ref, spec.lease_id, lease, spec.grace)
        log.info("release watch of lease %s on %s done: re-removed %d time(s)", spec.lease_id, ref.name, removed)
        return 0
    guard = RuleGuard(api, ref, lease, interval=spec.interval)
    log.info("guarding lease %s (rule %s) on %s every %.1f s until %s", spec.lease_id, spec.ip, ref.name,
             spec.interval, spec.expires_at)
    while not guard.expired():
        time.sleep(spec.interval)
        if _state_phase(spec.state_file, spec.account_id) not in ("open", "opening"):
            log.info("lease %s is no longer open in %s; the guard stops", spec.lease_id, spec.state_file)
            break
        try:
            guard.check_once()
        except Exception as exc:  # one failed round must not end the defence
            log.warning("guard round failed: %s: %s", type(exc).__name__, exc)
    log.info("guard of lease %s stops: %d check(s), %d repair(s)", spec.lease_id, guard.checks, guard.repairs)
    return 0


def main(argv: list[str] | None = None) -> int:
    from cicd_tools.support.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger("cicd_tools").setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    args = sys.argv[1:] if argv is None else argv
    return run(GuardSpec.from_json(args[0]))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
