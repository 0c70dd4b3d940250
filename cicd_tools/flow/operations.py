"""The operations ``flow`` calls, as one interface: the same functions the CLI's commands call, nothing parsed.

``AzureOperations`` binds them to real clients (a credential per call, as each command builds its own); tests
hand the flow a fake with the same methods and typed results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cicd_tools.adf.client import FactoryRef
    from cicd_tools.adf.operations import AdfRunRequest, AdfRunResult
    from cicd_tools.aml.mirroring import MirrorRequest, MirrorResult
    from cicd_tools.aml.operations import VerifyRequest, VerifyResult
    from cicd_tools.codeassets.operations import RegisterRequest
    from cicd_tools.codeassets.register import AssetOutcome
    from cicd_tools.flow.readiness import Published, ReadinessRequest
    from cicd_tools.pointer.contract import PublishResult
    from cicd_tools.pointer.operations import PointerWriteRequest
    from cicd_tools.settings.resolve import Settings
    from cicd_tools.storage.firewall import RollbackReport
    from cicd_tools.storage.operations import FirewallClosed, FirewallCloseRequest, FirewallOpened, FirewallOpenRequest
    from cicd_tools.storage.smoke import SmokeResult


class FlowOperations(Protocol):
    """What each flow step calls. Every method raises the operation's own errors (CicdError and subclasses)."""

    def firewall_open(self, request: FirewallOpenRequest, *, on_ip: Callable[[str], None],
                      on_rollback: Callable[[RollbackReport], None]) -> FirewallOpened: ...

    def firewall_close(self, request: FirewallCloseRequest, *,
                       on_guard_stopped: Callable[[int], None]) -> FirewallClosed: ...

    def firewall_hand_off(self, request: FirewallCloseRequest, lease_id: str) -> list[tuple[str, bool]]: ...

    def storage_smoke(self, settings: Settings, denied_budget: float) -> SmokeResult: ...

    def code_register(self, request: RegisterRequest, *,
                      on_done: Callable[[AssetOutcome], None]) -> list[AssetOutcome]: ...

    def pointer_write(self, request: PointerWriteRequest, storage: Settings) -> PublishResult: ...

    def adf_pipeline_parameters(self, factory: FactoryRef, arm_endpoint: str, pipeline: str) -> set[str] | None: ...

    def published(self, request: ReadinessRequest) -> Published: ...

    def adf_run(self, request: AdfRunRequest, arm_endpoint: str, *, on_started: Callable[[str], None],
                on_status: Callable[[str], None]) -> AdfRunResult: ...

    def aml_verify(self, request: VerifyRequest, storage: Settings) -> VerifyResult: ...

    def model_mirror(self, request: MirrorRequest, result: MirrorResult) -> MirrorResult: ...


class AzureOperations:
    """The operations against Azure (or the sandbox): clients built per call from the resolved settings."""

    @staticmethod
    def _credential() -> Any:
        from cicd_tools.credentials import build_credential

        return build_credential()

    def firewall_open(self, request: FirewallOpenRequest, *, on_ip: Callable[[str], None],
                      on_rollback: Callable[[RollbackReport], None]) -> FirewallOpened:
        from cicd_tools.storage.operations import open_firewall

        return open_firewall(request, on_ip=on_ip, on_rollback=on_rollback)

    def firewall_close(self, request: FirewallCloseRequest, *,
                       on_guard_stopped: Callable[[int], None]) -> FirewallClosed:
        from cicd_tools.storage.operations import close_firewall

        return close_firewall(request, on_guard_stopped=on_guard_stopped)

    def firewall_hand_off(self, request: FirewallCloseRequest, lease_id: str) -> list[tuple[str, bool]]:
        from cicd_tools.storage.operations import hand_off_close

        return hand_off_close(request, lease_id)

    def storage_smoke(self, settings: Settings, denied_budget: float) -> SmokeResult:
        from cicd_tools.storage.blob import container_client
        from cicd_tools.storage.smoke import smoke_test

        return smoke_test(container_client(settings), denied_budget=denied_budget)

    def code_register(self, request: RegisterRequest, *,
                      on_done: Callable[[AssetOutcome], None]) -> list[AssetOutcome]:
        from cicd_tools.codeassets.operations import register_code

        return register_code(request, self._credential(), on_done=on_done)

    def pointer_write(self, request: PointerWriteRequest, storage: Settings) -> PublishResult:
        from cicd_tools.pointer.contract import publish_pointer
        from cicd_tools.pointer.operations import pointer_for, workspace_version_check
        from cicd_tools.storage.blob import container_client

        pointer = pointer_for(request)
        return publish_pointer(container_client(storage), pointer,
                               version_exists=workspace_version_check(request.workspace, self._credential()))

    def adf_pipeline_parameters(self, factory: FactoryRef, arm_endpoint: str, pipeline: str) -> set[str] | None:
        from cicd_tools.adf.client import ArmCalls
        from cicd_tools.adf.operations import factory_api_for, pipeline_parameters

        api = factory_api_for(self._credential(), factory, arm_endpoint)
        return pipeline_parameters(api, ArmCalls(), factory, pipeline)

    def published(self, request: ReadinessRequest) -> Published:
        from cicd_tools.flow.readiness import read_published

        return read_published(request, self._credential())

    def adf_run(self, request: AdfRunRequest, arm_endpoint: str, *, on_started: Callable[[str], None],
                on_status: Callable[[str], None]) -> AdfRunResult:
        import dataclasses

        from cicd_tools.adf.operations import factory_api_for, run_pipeline

        api = factory_api_for(self._credential(), request.factory, arm_endpoint)
        request = dataclasses.replace(request, arm_endpoint=request.arm_endpoint or arm_endpoint)  # jobs' cancel
        return run_pipeline(api, request, on_started=on_started, on_status=on_status)

    def aml_verify(self, request: VerifyRequest, storage: Settings) -> VerifyResult:
        from cicd_tools.aml.operations import verify_jobs
        from cicd_tools.storage.blob import container_client

        return verify_jobs(request, self._credential(), container=lambda: container_client(storage))

    def model_mirror(self, request: MirrorRequest, result: MirrorResult) -> MirrorResult:
        from cicd_tools.aml.mirroring import check_request, mirror_checkpoint

        check_request(request)
        return mirror_checkpoint(request, self._credential, result)
