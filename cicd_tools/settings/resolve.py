"""Cloud profile and target resources: flags > environment (CICD_*) > config file > defaults, each value with
its source.

The command line resolves its flags once (``cli/_base.resolve_args``: flag, then ``CICD_*``, then
``cicd-tools.toml``, then the default) and hands the values with their sources here; the flow hands its merged
configuration (``settings/config.settings_of``). ``sources`` names where each value came from as a user would name
it (``--account``, ``CICD_BLOB_ENDPOINT``, ``storage.account in ./cicd-tools.toml``), so a refusal of two related
values that disagree names both truly. ``cicd-tools sandbox env`` prints these variables pointed at the local
cloud, so every command works against the sandbox with no further flags.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


def _arm_id_parts(value: str, kind: str) -> tuple[str, str, str] | None:
    """``(subscription, resource group, name)`` of an ARM resource id of type ``kind``
    (``/subscriptions/S/resourceGroups/R/providers/NS/KIND/NAME``); None for a plain name."""
    parts = value.strip("/").split("/")
    if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups" \
            or parts[4].lower() != "providers" or parts[6].lower() != kind.lower() or not all(parts):
        return None
    return parts[1], parts[3], parts[7]


# The settings that may be given as a full ARM id, and the resource type the id names.
ARM_ID_KINDS = {"workspace": "workspaces", "factory": "factories", "storage_account": "storageAccounts"}


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
    # setting name -> where its value came from (``--account``, ``CICD_BLOB_ENDPOINT``, ``KEY in FILE``)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, sources: Mapping[str, str] | None = None,
                 file: Callable[[str], tuple[str, str] | None] | None = None, **overrides: str | None) -> Settings:
        """Settings from non-None ``overrides`` (already resolved values), else ``CICD_*`` variables, else the config
        ``file`` (when given: variable name -> ``(value, source)`` of the file's key it also sets), else defaults.

        ``sources`` names where each override came from; an override it does not name counts as its flag.
        Related values are resolved together: a workspace, factory or account given as a full ARM id sets its
        subscription and resource group, and one that disagrees with those from another source is refused.
        Raises: ConfigError.
        """
        env = os.environ if environ is None else environ
        given = sources or {}
        values: dict[str, object] = {}
        origin: dict[str, str] = {}
        for field_name, var in ENV.items():
            raw = overrides.get(field_name)
            where = given.get(field_name) or flag_for(field_name) or var
            if raw is None:
                raw = env.get(var) or None
                where = var
            if raw is None and file is not None:
                raw, where = file(var) or (None, where)
            if raw is None:
                continue
            origin[field_name] = where
            if field_name == "ip_echo_urls":
                values[field_name] = tuple(u.strip() for u in raw.split(",") if u.strip())
            elif field_name in ("arm_endpoint", "blob_endpoint"):
                values[field_name] = raw.rstrip("/")
            else:
                values[field_name] = raw
        _split_arm_ids(values, origin)
        return cls(**values, sources=origin)  # type: ignore[arg-type]

    def source_of(self, name: str) -> str:
        """Where setting ``name`` came from, as a user would name it (its flag when nothing recorded it)."""
        return self.sources.get(name) or flag_for(name) or ENV[name]

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the flag and variable of each missing setting."""
        from cicd_tools.settings.keys import ENV_KEYS

        missing = [n for n in names if not getattr(self, n)]
        if missing:
            described = ", ".join(" / ".join(filter(None, (flag_for(n), ENV[n], _file_key(ENV_KEYS.get(ENV[n])))))
                                  for n in missing)
            raise ConfigError(f"missing configuration: {described}")

    def account_url(self) -> str:
        """The blob endpoint of the storage account. Raises: ConfigError when the endpoint names another account."""
        if self.blob_endpoint:
            named = endpoint_account(self.blob_endpoint)
            if self.storage_account and named is not None and named.lower() != self.storage_account.lower():
                raise ConfigError(
                    f"the blob endpoint {self.blob_endpoint} ({self.source_of('blob_endpoint')}) is"
                    f" account {named!r}, but the account is {self.storage_account!r}"
                    f" ({self.source_of('storage_account')}): they must name the same account",
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


def _file_key(key: str | None) -> str | None:
    return f"{key} in cicd-tools.toml" if key else None


def _split_arm_ids(values: dict[str, object], origin: dict[str, str]) -> None:
    """A workspace, factory or account given as an ARM id: its name, and its subscription and resource group
    (which another source may not contradict). Raises: ConfigError naming both sources."""
    for name, kind in ARM_ID_KINDS.items():
        raw = values.get(name)
        parts = _arm_id_parts(raw, kind) if isinstance(raw, str) and raw.startswith("/") else None
        if parts is None:
            continue
        where = origin[name]
        values[name] = parts[2]
        for pair, part in (("subscription_id", parts[0]), ("resource_group", parts[1])):
            other = values.get(pair)
            if isinstance(other, str) and other.lower() != part.lower():
                label = pair.replace("_", " ").replace(" id", "")
                raise ConfigError(
                    f"{name.replace('_', ' ')} {raw} ({where}) is in {label} {part!r}, but the {label} is"
                    f" {other!r} ({origin[pair]}): they must name the same {label}",
                    hint="Fix the one that is wrong, or give the name alone (not the ARM id) to use the"
                    f" {label} from {origin[pair]}.",
                )
            if other is None:
                values[pair] = part
                origin[pair] = where
