"""``code register`` as an operation: typed request in, one outcome per asset out (no argparse, no printing).

The CLI (``cli/_code_assets.py``) and ``flow`` both call ``register_code``; each renders the outcomes its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cicd_tools.codeassets.register import AssetOutcome, AssetSpec, Registrar, RegistrationResult, register_many
from cicd_tools.codeassets.workspace import WorkspaceRef
from cicd_tools.support.errors import CicdError


@dataclass(frozen=True)
class RegisterRequest:
    """What to register where. ``repo_root`` None: each asset's CI checkout or git root."""

    workspace: WorkspaceRef
    specs: tuple[AssetSpec, ...]
    requested_version: str
    unique: bool = False
    name_marker: bool = False
    repo_root: Path | None = None
    show_progress: bool = False


def repo_root_for(request: RegisterRequest, spec: AssetSpec) -> Path:
    from cicd_tools.codeassets.register import find_repo_root

    return request.repo_root if request.repo_root is not None else find_repo_root(spec.path)


def register_code(
    request: RegisterRequest,
    credential: Any,
    *,
    container: Any | None = None,
    on_done: Callable[[AssetOutcome], None] | None = None,
) -> list[AssetOutcome]:
    """Register every asset of ``request`` (concurrently); with ``container``, publish each one's pointer.

    ``on_done`` hears each outcome as soon as Azure ML answered it (evidence first). A failed asset is an
    outcome with its error, never an exception; usage errors (duplicate names) and a broken SDK raise.
    """
    from cicd_tools.codeassets import register as reg
    from cicd_tools.codeassets.sdk import build_ml_client
    from cicd_tools.codeassets.workspace import WorkspaceCodes

    workspace = request.workspace
    codes = WorkspaceCodes(workspace, credential)
    try:
        # The first client is built before anything else runs: a broken SDK fails once, clearly.
        first = build_ml_client(credential, workspace, show_progress=request.show_progress)
        clients = iter([first])

        def registrar_for(spec: AssetSpec) -> Registrar:
            client = next(clients, None) or build_ml_client(credential, workspace,
                                                            show_progress=request.show_progress)
            return Registrar(client=client, lookup=codes, repo_root=repo_root_for(request, spec))

        def publish(outcome: AssetOutcome) -> AssetOutcome:
            from cicd_tools.codeassets.publishing import publish_registration

            assert outcome.result is not None and container is not None
            try:
                published = publish_registration(container, outcome.result, workspace, codes.version_exists)
            except Exception as exc:  # the registration stands: keep it as evidence, report the pointer step
                err = reg.later_step_error(exc)
                return replace(outcome, pointer_error=pointer_step_error(err, outcome.result))
            return replace(outcome, pointer=published)

        return register_many(registrar_for, list(request.specs), request.requested_version, unique=request.unique,
                             name_marker=request.name_marker, after=publish if container is not None else None,
                             on_done=on_done)
    finally:
        codes.close()


def pointer_step_error(err: CicdError, result: RegistrationResult) -> CicdError:
    """``err`` from the pointer step, saying the registration stands and how to re-run only that step."""
    rerun = (f"cicd-tools pointer write --asset {result.name} --version {result.version}"
             f" --requested-version {result.requested_version} --content-hash {result.content_hash}")
    err.message = f"{result.name}:{result.version} was registered, but its pointer was not published: {err.message}"
    first = f"{err.hint.rstrip('.')}. " if err.hint else ""
    err.hint = (f"{first}Do not re-register: once that is fixed, re-run only the pointer step with the same"
                f" storage and workspace flags: {rerun}")
    return err
