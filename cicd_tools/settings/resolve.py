"""Cloud profile and target resources: flags > environment (CICD_*) > defaults.

``cicd-tools sandbox env`` prints these variables pointed at the local cloud, so every command
works against the sandbox with no further flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cicd_tools.support.errors import ConfigError

PUBLIC_ARM = "https://management.azure.com"
PUBLIC_STORAGE_SUFFIX = "core.windows.net"
DEFAULT_IP_ECHO_URLS = ("https://api.ipify.org", "https://ifconfig.me/ip", "https://checkip.amazonaws.com")

# name of the setting -> environment variable
ENV = {
    "subscription_id": "CICD_SUBSCRIPTION_ID",
    "resource_group": "CICD_RESOURCE_GROUP",
    "storage_account": "CICD_STORAGE_ACCOUNT",
    "workspace": "CICD_WORKSPACE",
    "factory": "CICD_FACTORY",
    "arm_endpoint": "CICD_ARM_ENDPOINT",
    "blob_endpoint": "CICD_BLOB_ENDPOINT",
    "pointer_container": "CICD_POINTER_CONTAINER",
    "ip_echo_urls": "CICD_IP_ECHO_URLS",
    "auth_mode": "CICD_AUTH_MODE",
    "connection_string": "CICD_STORAGE_CONNECTION_STRING",
}

# name of the setting -> the command-line flag that sets it (where it is not ``--`` + the name)
FLAGS = {
    "storage_account": "--account",
    "pointer_container": "--container",
}


def flag_for(name: str) -> str | None:
    """The flag that sets setting ``name`` (``None`` when only its environment variable does)."""
    if name == "ip_echo_urls":
        return None
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def endpoint_account(url: str) -> str | None:
    """The account a blob endpoint names: ``https://ACCOUNT.blob.SUFFIX`` or, path-style as Azurite and the sandbox
    serve it, ``https://HOST:PORT/ACCOUNT``; None when the URL names none."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if ".blob." in host:
        return host.split(".", 1)[0]
    segment = parts.path.strip("/").split("/", 1)[0]
    return segment or None


def _source(name: str, value: str, environ: Mapping[str, str] | None = None) -> str:
    """Where a setting's value came from, as a user would name it: its variable when that holds it, else its flag."""
    env = os.environ if environ is None else environ
    var = ENV[name]
    if (env.get(var) or "").rstrip("/") == value.rstrip("/"):
        return var
    return flag_for(name) or var


@dataclass(frozen=True)
class Settings:
    """Where the toolkit points: cloud endpoints and target resources."""

    subscription_id: str | None = None
    resource_group: str | None = None
    storage_account: str | None = None
    workspace: str | None = None
    factory: str | None = None
    arm_endpoint: str = PUBLIC_ARM
    blob_endpoint: str | None = None
    pointer_container: str = "ml-globals"
    ip_echo_urls: tuple[str, ...] = DEFAULT_IP_ECHO_URLS
    auth_mode: str = "login"  # login (token credential) | key (connection string)
    connection_string: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: str | None) -> Settings:
        """Settings from ``CICD_*`` variables, with non-None ``overrides`` (flags) winning."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field_name, var in ENV.items():
            raw = overrides.get(field_name)
            if raw is None:
                raw = env.get(var) or None
            if raw is None:
                continue
            if field_name == "ip_echo_urls":
                values[field_name] = tuple(u.strip() for u in raw.split(",") if u.strip())
            elif field_name in ("arm_endpoint", "blob_endpoint"):
                values[field_name] = raw.rstrip("/")
            else:
                values[field_name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the flag and variable of each missing setting."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            described = ", ".join(" / ".join(filter(None, (flag_for(n), ENV[n]))) for n in missing)
            raise ConfigError(f"missing configuration: {described}")

    def account_url(self) -> str:
        """The blob endpoint of the storage account. Raises: ConfigError when the endpoint names another account."""
        if self.blob_endpoint:
            named = endpoint_account(self.blob_endpoint)
            if self.storage_account and named is not None and named.lower() != self.storage_account.lower():
                raise ConfigError(
                    f"the blob endpoint {self.blob_endpoint} ({_source('blob_endpoint', self.blob_endpoint)}) is"
                    f" account {named!r}, but the account is {self.storage_account!r}"
                    f" ({_source('storage_account', self.storage_account)}): they must name the same account",
                    hint=f"Fix the one that is wrong; to use {self.storage_account!r}, also pass its --blob-endpoint"
                    " (or unset CICD_BLOB_ENDPOINT to use https://ACCOUNT.blob.core.windows.net).",
                )
            return self.blob_endpoint
        self.require("storage_account")
        return f"https://{self.storage_account}.blob.{PUBLIC_STORAGE_SUFFIX}"

    def storage_account_id(self) -> str:
        self.require("subscription_id", "resource_group", "storage_account")
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.storage_account}"
        )

    def workspace_id(self) -> str:
        self.require("subscription_id", "resource_group", "workspace")
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )
