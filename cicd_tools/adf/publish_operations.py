"""``adf diff`` and ``adf deploy`` as operations: typed requests in, typed results out (no argparse, no printing).

The CLI (``cli/adf_publish.py``) renders the results; the factory facade is built here unless one is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd_tools.adf.client import ArmCalls, FactoryRef
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import UsageError

if TYPE_CHECKING:
    from cicd_tools.adf.client import FactoryApi
    from cicd_tools.adf.publish import Change, RepoFactory, Step

log = logging.getLogger("cicd_tools.adf")


@dataclass(frozen=True)
class FactoryPublishRequest:
    """The factory's Git folder and the factory it is compared with or deployed to."""

    path: Path
    settings: Settings  # subscription, resource group, factory, ARM endpoint (each with its source)
    global_overrides: Mapping[str, Any] = field(default_factory=dict)
    delete_orphans: bool = False  # deploy only: delete published resources the folder no longer has
    dry_run: bool = False  # deploy only: plan, change nothing


@dataclass(frozen=True)
class FactoryDiff:
    factory: str
    changes: tuple[Change, ...]
    arm_calls: int

    @property
    def identical(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class FactoryDeployed:
    factory: str
    steps: tuple[Step, ...]
    done: tuple[str, ...]  # the steps that completed, described
    dry_run: bool
    arm_calls: int


def factory_of(settings: Settings) -> FactoryRef:
    """The factory ``settings`` names. Raises: ConfigError naming what is missing."""
    settings.require("subscription_id", "resource_group", "factory")
    assert settings.subscription_id and settings.resource_group and settings.factory
    return FactoryRef(settings.subscription_id, settings.resource_group, settings.factory)


def _inputs(request: FactoryPublishRequest, api: FactoryApi | None,
            credential: Any | None) -> tuple[RepoFactory, FactoryRef, FactoryApi, ArmCalls]:
    """The folder first (its errors are the user's first concern), then the factory and its facade."""
    from cicd_tools.adf.publish import load_repo

    repo = load_repo(request.path, global_overrides=request.global_overrides)
    ref = factory_of(request.settings)
    if api is None:
        from cicd_tools.adf.operations import factory_api_for
        from cicd_tools.credentials import build_credential

        endpoint = request.settings.arm_endpoint.rstrip("/")
        if not endpoint.startswith("https://"):
            where = request.settings.source_of("arm_endpoint")
            raise UsageError(f"{where} must be an https:// URL, got {request.settings.arm_endpoint!r}")
        api = factory_api_for(credential or build_credential(), ref, endpoint)
    return repo, ref, api, ArmCalls()


def diff_factory(request: FactoryPublishRequest, *, api: FactoryApi | None = None,
                 credential: Any | None = None) -> FactoryDiff:
    """What differs between the folder and the published factory (read only). Raises: UsageError, AzureError."""
    from cicd_tools.adf.publish import compare, read_published

    repo, ref, api, calls = _inputs(request, api, credential)
    changes = compare(repo, read_published(api, calls, ref))
    return FactoryDiff(ref.name, tuple(changes), calls.calls)


def deploy_factory(request: FactoryPublishRequest, *, api: FactoryApi | None = None, credential: Any | None = None,
                   on_step: Callable[[str], None] | None = None) -> FactoryDeployed:
    """Publish the folder to the factory in dependency order (``dry_run``: plan only). Raises: UsageError,
    AzureError (the steps done so far are in the log)."""
    from cicd_tools.adf.publish import deploy, plan, read_published

    repo, ref, api, calls = _inputs(request, api, credential)
    steps = plan(repo, read_published(api, calls, ref), delete_orphans=request.delete_orphans)
    done: list[str] = []

    def record(step: Step) -> None:
        done.append(step.describe())
        if on_step is not None:
            on_step(step.describe())

    if not request.dry_run and steps:
        log.info("deploying %s to factory %s (%d steps)", request.path, ref.name, len(steps))
        deploy(api, calls, ref, repo, steps, done=record)
    return FactoryDeployed(ref.name, tuple(steps), tuple(done), request.dry_run, calls.calls)
