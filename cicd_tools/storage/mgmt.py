"""The storage management client and the account a command names (shared by the firewall and its guard process)."""

from __future__ import annotations

from typing import Any

from cicd_tools.settings.resolve import Settings
from cicd_tools.storage.arm import AccountRef


def account_ref(settings: Settings) -> AccountRef:
    """The account ``settings`` names. Raises: ConfigError naming what is missing."""
    settings.require("subscription_id", "resource_group", "storage_account")
    assert settings.subscription_id and settings.resource_group and settings.storage_account
    return AccountRef(settings.subscription_id, settings.resource_group, settings.storage_account)


def mgmt_client(settings: Settings, credential: Any | None = None) -> Any:
    """A ``StorageManagementClient`` pointed at ``settings.arm_endpoint`` (public Azure or the sandbox)."""
    from azure.mgmt.storage import StorageManagementClient

    from cicd_tools.credentials import build_credential

    return StorageManagementClient(
        credential or build_credential(),
        str(settings.subscription_id),
        base_url=settings.arm_endpoint,
        credential_scopes=[settings.arm_endpoint.rstrip("/") + "/.default"],
    )
