"""The one place command handlers build Azure clients (lazily: azure imports stay out of start-up)."""

from __future__ import annotations

import argparse
import logging
import re
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import env_default
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import ConfigError

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

_log = logging.getLogger("cicd_tools.storage.blob")


# Azure's container naming rule (what the service answers 400 InvalidResourceName for), and $root.
_CONTAINER_NAME = re.compile(r"\$root|(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*")


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that say which storage account and how to authenticate."""
    env_default(parser, "--account", env="CICD_STORAGE_ACCOUNT", help="storage account name")
    env_default(parser, "--blob-endpoint", env="CICD_BLOB_ENDPOINT",
                help="blob endpoint URL (default https://ACCOUNT.blob.core.windows.net)")
    env_default(parser, "--container", env="CICD_POINTER_CONTAINER", default="ml-globals",
                help="container holding the pointers")
    env_default(parser, "--auth-mode", env="CICD_AUTH_MODE", default="login", choices=("login", "key"),
                help="login: Entra ID token (the CI path); key: a connection string")
    env_default(parser, "--connection-string", env="CICD_STORAGE_CONNECTION_STRING",
                help="connection string for --auth-mode key (masked in logs)")


def storage_settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        storage_account=args.account,
        blob_endpoint=args.blob_endpoint,
        pointer_container=args.container,
        auth_mode=args.auth_mode,
        connection_string=args.connection_string,
    )


def container_client(settings: Settings) -> ContainerClient:
    """A ContainerClient for the pointer container. Raises: ConfigError."""
    from azure.storage.blob import BlobServiceClient

    from cicd_tools.support.redact import register_secret

    if not _CONTAINER_NAME.fullmatch(settings.pointer_container or ""):
        raise ConfigError(
            f"--container {settings.pointer_container!r} is not a valid blob container name",
            hint="Use 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit"
            " (default ml-globals); check CICD_POINTER_CONTAINER.",
        )
    if settings.auth_mode == "key":
        if not settings.connection_string:
            raise ConfigError("--auth-mode key needs --connection-string or CICD_STORAGE_CONNECTION_STRING")
        register_secret(settings.connection_string)
        try:
            service = BlobServiceClient.from_connection_string(
                settings.connection_string, retry_policy=reporting_blob_retry()
            )
        except ValueError as exc:  # the SDK's message never echoes the (secret) string itself
            raise ConfigError(
                f"--connection-string is not a storage connection string: {exc}",
                hint="Copy it from the account's Access keys blade (DefaultEndpointsProtocol=https;AccountName=...;"
                "AccountKey=...), or use --auth-mode login.",
            ) from None
    else:
        from cicd_tools.credentials import build_credential

        url = settings.account_url()
        if not url.lower().startswith(("https://", "http://")):
            raise ConfigError(
                f"blob endpoint {url!r} is not an http(s) URL",
                hint="Pass --blob-endpoint https://ACCOUNT.blob.core.windows.net (or leave it out), or fix"
                " CICD_BLOB_ENDPOINT.",
            )
        try:
            service = BlobServiceClient(url, credential=build_credential(), retry_policy=reporting_blob_retry())
        except ValueError as exc:
            raise ConfigError(f"blob endpoint {url!r} is not usable: {exc}",
                              hint="Pass --blob-endpoint https://ACCOUNT.blob.core.windows.net.") from None
    return service.get_container_client(settings.pointer_container)


def reporting_blob_retry() -> Any:
    """azure-storage-blob's own ExponentialRetry (same waits), saying on stderr what it retries, why, and the wait.

    Its defaults wait 15, 18 and 24 s (plus jitter) between tries: a minute and more of silence in a CI log
    without this. The line goes through logging (INFO, redacted) as ``progress.retry_line`` words it.
    """
    from urllib.parse import urlsplit

    from azure.storage.blob import ExponentialRetry

    from cicd_tools.support.progress import retry_line

    class ReportingExponentialRetry(ExponentialRetry):  # type: ignore[misc]
        def sleep(self, settings: dict[str, Any], transport: Any) -> None:
            backoff = self.get_backoff_time(settings)
            if not backoff or backoff < 0:
                return
            history = settings.get("history") or []
            last = history[-1] if history else None
            request = getattr(last, "http_request", None)
            response = getattr(last, "http_response", None)
            error = getattr(last, "error", None)
            what = f"blob {request.method} {urlsplit(request.url).path}" if request is not None else "blob request"
            if response is not None:
                why = f"HTTP {response.status_code} {getattr(response, 'reason', '') or ''}".strip()
            else:
                why = type(error).__name__ if error is not None else "transient failure"
            _log.info("%s", retry_line(what, why, int(settings["count"]), backoff, self.total_retries))
            transport.sleep(backoff)

    return ReportingExponentialRetry()


def datafactory_client(credential: Any, subscription_id: str, arm_endpoint: str) -> Any:
    """``cicd_tools.adf.client.datafactory_client`` (the builder lives with the library that uses it)."""
    from cicd_tools.adf.client import datafactory_client as build

    return build(credential, subscription_id, arm_endpoint)


def jobs_of_adf_run(factory: str | None, run_id: str, workspace: Any, credential: Any, *, direct: str,
                    **kwargs: Any) -> list[Any]:
    """``cicd_tools.aml.adf_jobs.jobs_of_adf_run`` (kept here for the command handlers that import it)."""
    from cicd_tools.aml import adf_jobs

    return adf_jobs.jobs_of_adf_run(factory, run_id, workspace, credential, direct=direct, **kwargs)
