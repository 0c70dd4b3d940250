"""The storage flags of the commands; the client builders live with their services (re-exported here)."""

from __future__ import annotations

import argparse

from cicd_tools.adf.client import datafactory_client
from cicd_tools.aml.adf_jobs import jobs_of_adf_run
from cicd_tools.cli._base import env_default, settings_from_args
from cicd_tools.settings.resolve import Settings
from cicd_tools.storage.blob import container_client, reporting_blob_retry

__all__ = ["add_storage_flags", "container_client", "datafactory_client", "jobs_of_adf_run", "reporting_blob_retry",
           "storage_settings"]


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
    return settings_from_args(args, storage_account="account", blob_endpoint="blob_endpoint",
                              pointer_container="container", auth_mode="auth_mode",
                              connection_string="connection_string")
