"""``sandbox up|down|status|env`` as library calls: the background process and its state dir.

``up`` starts ``python -m cicd_tools.sandbox.runtime`` in a new session and waits (bounded) for
``DIR/sandbox.json``, which the runtime writes once every port answers. ``down`` stops it and then
makes sure no Azurite is left either, by the pids recorded in that file. POSIX only (process groups).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cicd_tools.support.errors import ConfigError, TimeoutExpired

INFO_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"
RUNTIME_MARK = "cicd_tools.sandbox.runtime"
# Named field scenarios (``sandbox up --scenario``); ``sandbox.scenarios`` implements them.
SCENARIOS: tuple[str, ...] = ("aks-identity-gap", "key-datastores", "slow-propagation")


class RunningSandbox(Protocol):
    """What ``write_info`` reads of a started ``runtime.Sandbox`` (a protocol: the runtime imports this module)."""

    @property
    def azurite_pid(self) -> int | None: ...
    @property
    def arm_endpoint(self) -> str: ...
    @property
    def control_url(self) -> str: ...
    @property
    def ca_bundle(self) -> Path: ...
    @property
    def blob_endpoint(self) -> str: ...
    @property
    def private_blob_endpoint(self) -> str: ...
    def env(self, state_dir: Path | None = None) -> dict[str, str]: ...


@dataclass(frozen=True)
class SandboxInfo:
    """What ``DIR/sandbox.json`` records about a running sandbox."""

    pid: int
    azurite_pid: int | None
    arm_endpoint: str
    control_url: str
    ca_bundle: str
    blob_endpoint: str
    private_blob_endpoint: str
    env: dict[str, str]
    state_dir: str
    started_at: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SandboxStatus:
    running: bool
    healthy: bool
    info: SandboxInfo | None
    state_dir: str


@dataclass(frozen=True)
class UpResult:
    already_running: bool
    info: SandboxInfo


@dataclass(frozen=True)
class DownResult:
    was_running: bool
    stopped_pids: tuple[int, ...]


def write_info(state_dir: Path, sandbox: RunningSandbox, *, pid: int) -> SandboxInfo:
    """Record the running sandbox atomically (temp file, then rename; readable by the owner only)."""
    info = SandboxInfo(
        pid=pid, azurite_pid=sandbox.azurite_pid, arm_endpoint=sandbox.arm_endpoint,
        control_url=sandbox.control_url, ca_bundle=str(sandbox.ca_bundle), blob_endpoint=sandbox.blob_endpoint,
        private_blob_endpoint=sandbox.private_blob_endpoint, env=sandbox.env(state_dir),
        state_dir=str(state_dir), started_at=time.time(),
    )
    tmp = state_dir / f".{INFO_FILE}.{pid}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # Created 0600 (never readable by others, not even for a moment): it holds the sandbox secret.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(info.to_json(), indent=2))
    os.replace(tmp, state_dir / INFO_FILE)
    return info


def remove_info(state_dir: Path, *, pid: int) -> None:
    """Remove ``sandbox.json`` if it describes process ``pid``."""
    info = read_info(state_dir)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / INFO_FILE).unlink()


def read_info(state_dir: Path) -> SandboxInfo | None:
    try:
        data = json.loads((state_dir / INFO_FILE).read_text())
        return SandboxInfo(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def pid_alive(pid: int, mark: str | None = None) -> bool:
    """Whether ``pid`` runs (zombies count as gone), and its command line contains ``mark`` if given."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if ") Z" in (proc / "stat").read_text():
                return False
            if mark and mark not in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return False  # the pid was reused by another program
        except OSError:
            return False
    return True


def healthy(info: SandboxInfo, timeout: float = 3.0) -> bool:
    """The control endpoint answers ``/health`` (asked with the sandbox secret recorded in ``sandbox.json``)."""
    from cicd_tools.sandbox.identity.identity import SECRET_ENV
    from cicd_tools.sandbox.server import SECRET_HEADER

    context = ssl.create_default_context(cafile=info.ca_bundle)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(f"{info.control_url}/health",
                                     headers={SECRET_HEADER: info.env.get(SECRET_ENV, "")})
    try:
        with opener.open(request, timeout=timeout) as response:
            return bool(json.loads(response.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False


def status(state_dir: Path) -> SandboxStatus:
    info = read_info(state_dir)
    running = info is not None and pid_alive(info.pid, RUNTIME_MARK)
    return SandboxStatus(running, running and info is not None and healthy(info), info, str(state_dir.resolve()))


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    import fcntl

    if not state_dir.exists():
        state_dir.mkdir(parents=True, mode=0o700)  # a new state folder is the owner's only
    with open(state_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(
    state_dir: Path,
    *,
    propagation_delay: float = 5.0,
    timeout: float = 60.0,
    scenario: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> UpResult:
    """Start the sandbox in the background, or report the healthy one already running.

    ``scenario`` (one of SCENARIOS) is applied once it is ready, to a fresh or a running sandbox.
    Raises: ConfigError when it dies during start-up or the scenario is unknown; TimeoutExpired when it
    is not ready in time.
    """
    if scenario is not None and scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}", hint=f"Use one of: {', '.join(SCENARIOS)}.")
    result = _up(state_dir, propagation_delay=propagation_delay, timeout=timeout, sleep=sleep, clock=clock)
    if scenario is not None:
        from cicd_tools.sandbox.control_client import ControlClient
        from cicd_tools.sandbox.identity.identity import SECRET_ENV

        client = ControlClient(result.info.control_url, result.info.ca_bundle,
                               secret=result.info.env.get(SECRET_ENV))
        try:
            client.apply_scenario(scenario)
        finally:
            client.close()
    return result


def _up(
    state_dir: Path,
    *,
    propagation_delay: float,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> UpResult:
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        current = status(state_dir)
        if current.running and current.healthy and current.info is not None:
            return UpResult(True, current.info)
        _stop(state_dir, timeout=10.0, sleep=sleep, clock=clock)  # clear a dead or sick one first
        # Found here, from the caller's folder: a missing Azurite is the caller's clear ConfigError (how to get it),
        # not a traceback in the child's log; the child is told where it is.
        from cicd_tools.sandbox.storage.azurite import find_azurite

        azurite = find_azurite()
        with open(state_dir / LOG_FILE, "ab") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", RUNTIME_MARK, "--state-dir", str(state_dir),
                 "--propagation-delay", str(propagation_delay)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=state_dir, env={**os.environ, "CICD_AZURITE_BIN": str(azurite.resolve())},
            )
        deadline = clock() + timeout
        while clock() < deadline:
            info = read_info(state_dir)
            if info is not None and info.pid == child.pid and healthy(info):
                return UpResult(False, info)
            if child.poll() is not None:
                raise ConfigError(f"the sandbox exited during start-up (code {child.returncode}); its log ends with:\n"
                                  f"{_log_tail(state_dir)}")
            sleep(0.1)
        _stop(state_dir, timeout=10.0, sleep=sleep, clock=clock, extra_pid=child.pid)
        raise TimeoutExpired(f"the sandbox was not ready within {timeout:.0f} s; its log ends with:\n"
                             f"{_log_tail(state_dir)}")


def down(
    state_dir: Path,
    *,
    timeout: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DownResult:
    """Stop the sandbox and any Azurite it left; idempotent."""
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        return _stop(state_dir, timeout=timeout, sleep=sleep, clock=clock)


def _stop(
    state_dir: Path, *, timeout: float, sleep: Callable[[float], None], clock: Callable[[], float],
    extra_pid: int | None = None,
) -> DownResult:
    info = read_info(state_dir)
    targets: list[tuple[int, str]] = []
    if info is not None:
        targets.append((info.pid, RUNTIME_MARK))
        if info.azurite_pid:
            targets.append((info.azurite_pid, "azurite"))
    if extra_pid is not None:
        targets.append((extra_pid, RUNTIME_MARK))
    live = [(pid, mark) for pid, mark in targets if pid_alive(pid, mark)]
    runtimes = [pid for pid, mark in live if mark == RUNTIME_MARK]
    others = [pid for pid, mark in live if mark != RUNTIME_MARK]

    def wait_gone(pids: list[int]) -> bool:
        deadline = clock() + timeout
        while any(pid_alive(p) for p in pids):
            if clock() >= deadline:
                return False
            sleep(0.1)
        return True

    # The runtime stops Azurite itself on SIGTERM; whatever outlives that is killed by its process group.
    for pid in runtimes:
        _signal_group(pid, signal.SIGTERM)
    if not wait_gone(runtimes):
        for pid in runtimes:
            _signal_group(pid, signal.SIGKILL)
        wait_gone(runtimes)
    leftovers = [pid for pid in others if pid_alive(pid)]
    for pid in leftovers:
        _signal_group(pid, signal.SIGKILL)
    wait_gone(leftovers)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / INFO_FILE).unlink()
    return DownResult(bool(live), tuple(pid for pid, _ in live))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Both the runtime and Azurite lead their own session, so the group id is the pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _log_tail(state_dir: Path, size: int = 3000) -> str:
    try:
        return (state_dir / LOG_FILE).read_text(errors="replace")[-size:]
    except FileNotFoundError:
        return "(no log)"


def env_lines(env: dict[str, str]) -> str:
    """``export NAME=value`` lines, shell-quoted, for ``eval "$(cicd-tools sandbox env)"``."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())
