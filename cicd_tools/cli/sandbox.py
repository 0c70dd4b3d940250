"""``cicd-tools sandbox up|down|status|env``: the local cloud as a background service."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cicd_tools.cli._base import Context, Outcome, env_default
from cicd_tools.sandbox.process import SCENARIOS

STATE_DIR_ENV = "CICD_SANDBOX_STATE_DIR"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run the local cloud (Azurite + ARM, identity, firewall and RBAC emulators)",
        description="A local stand-in for the Azure surface cicd-tools touches. "
        'Typical use: `cicd-tools sandbox up && eval "$(cicd-tools sandbox env)"`.',
    )
    actions = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
        env_default(sub, "--state-dir", env=STATE_DIR_ENV, default=".sandbox",
                    help="folder holding the sandbox's certificates, data, log and sandbox.json")
        return sub

    up = add("up", "start the sandbox in the background (idempotent) and wait until it is ready")
    up.description = (
        "Start the sandbox in the background (idempotent) and wait until it is ready. It listens on 127.0.0.1 only "
        "and generates a secret (kept in the owner-only STATE/sandbox.json, exported as CICD_SANDBOX_SECRET by "
        "`sandbox env`): control calls need it, and ARM and blob calls need a token the sandbox signed. Azure ML "
        "jobs submitted to it run real commands AS YOU (your files, your network; working folder "
        "STATE/aml-jobs): submit only jobs you would run yourself. Azurite's own port takes only the sandbox's "
        "account keys (no tokens: Azurite does not check signatures). The sandbox is a development tool, not an "
        "isolation boundary.")
    up.add_argument("--propagation-delay", type=float, default=5.0,
                    help="seconds before a new storage IP rule takes effect (Azure: seconds to tens of seconds)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start-up")
    up.add_argument("--scenario", choices=SCENARIOS, default=None,
                    help="break the chain like a field report (also on a running sandbox): aks-identity-gap"
                    " (no workload identity on the AKS side), key-datastores (key-based system datastores"
                    " with shared key disabled); `cicd-tools preflight` names the root cause; slow-propagation"
                    " (role assignments and IP rules take effect after field timings, minutes for RBAC)")
    up.set_defaults(handler=handle_up)
    add("down", "stop the sandbox and every process it started").set_defaults(handler=handle_down)
    add("status", "say whether the sandbox runs, and its endpoints").set_defaults(handler=handle_status)
    env = add("env", 'print `export` lines for the sandbox: eval "$(cicd-tools sandbox env)"')
    env.add_argument(
        "--credential", dest="sandbox_credential", default=None,
        choices=("managed-identity", "azure-cli", "workload-identity", "azure-pipelines"),
        help="which CI credential the variables set up: managed-identity (App Service MSI endpoint), azure-cli "
        "(an az stand-in on PATH), workload-identity (a GitHub OIDC token file + the sandbox's Entra endpoint), "
        "azure-pipelines (SYSTEM_OIDCREQUESTURI + AZURESUBSCRIPTION_*); given, it also sets CICD_CREDENTIAL and "
        "unsets the other modes' variables (default: the sandbox's managed-identity variables, nothing unset)",
    )
    env.set_defaults(handler=handle_env)


def _state_dir(args: argparse.Namespace) -> Path:
    """``--state-dir`` as a Path. Raises: UsageError when it names something that is not a folder."""
    from cicd_tools.support.errors import UsageError

    path = Path(args.state_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--state-dir {path} exists and is not a folder",
                         hint=f"Name a folder (created when missing), or set {STATE_DIR_ENV} to one.")
    if not str(args.state_dir).strip():
        raise UsageError("--state-dir is empty", hint=f"Name a folder, or unset {STATE_DIR_ENV}.")
    return path


def _endpoints(info: Any) -> str:
    return (f"  ARM + identity + control: {info.arm_endpoint}\n"
            f"  blob (agent origin):      {info.blob_endpoint}\n"
            f"  blob (private endpoint):  {info.private_blob_endpoint}\n"
            f"  CA bundle:                {info.ca_bundle}")


def handle_up(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.sandbox import process

    result = process.up(_state_dir(args), propagation_delay=args.propagation_delay, timeout=args.timeout,
                        scenario=args.scenario)
    verb = "already running" if result.already_running else "started"
    applied = f"scenario {args.scenario} applied\n" if args.scenario else ""
    text = (f"sandbox {verb} (pid {result.info.pid}) in {result.info.state_dir}\n{applied}{_endpoints(result.info)}\n"
            f'Point the toolkit at it: eval "$(cicd-tools sandbox env --state-dir {args.state_dir})"')
    return Outcome(data={"status": verb.replace(" ", "_"), "scenario": args.scenario, **_public(result.info)},
                   text=text)


def _public(info: Any) -> dict[str, Any]:
    """What ``up``/``status`` print about the sandbox: everything but its secret (``sandbox env`` exports that)."""
    from cicd_tools.sandbox.identity.identity import SECRET_ENV

    data: dict[str, Any] = info.to_json()
    data["env"] = {k: v for k, v in data["env"].items() if k != SECRET_ENV}
    return data


def handle_down(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.sandbox import process

    result = process.down(_state_dir(args))
    text = (f"sandbox stopped (pids {', '.join(map(str, result.stopped_pids))})" if result.was_running
            else "sandbox was not running")
    return Outcome(data={"wasRunning": result.was_running, "stoppedPids": list(result.stopped_pids)}, text=text)


def handle_status(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.sandbox import process

    st = process.status(_state_dir(args))
    data: dict[str, Any] = {"running": st.running, "healthy": st.healthy, "stateDir": st.state_dir}
    if st.running and st.info is not None:
        data.update(_public(st.info))
        state = "running" if st.healthy else "running but not answering"
        return Outcome(data=data, text=f"sandbox {state} (pid {st.info.pid})\n{_endpoints(st.info)}")
    return Outcome(data=data, text=f"sandbox not running in {st.state_dir}")


def handle_env(args: argparse.Namespace, ctx: Context) -> Outcome:
    from cicd_tools.sandbox import process
    from cicd_tools.support.errors import ConfigError

    st = process.status(_state_dir(args))
    if not st.running or st.info is None:
        raise ConfigError(f"no sandbox is running in {st.state_dir}",
                          hint="Start one with `cicd-tools sandbox up` (same --state-dir).")
    if args.sandbox_credential is None:
        return Outcome(data=st.info.env, text=process.env_lines(st.info.env))
    from cicd_tools.sandbox.identity.ci_credentials import credential_env

    env, unset = credential_env(args.sandbox_credential, st.info.env, Path(st.info.state_dir))
    text = (f"unset {' '.join(unset)}\n" if unset else "") + process.env_lines(env)
    return Outcome(data=env, text=text)
