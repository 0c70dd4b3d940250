"""The sandbox's ``az``: just enough of the Azure CLI for ``AzureCliCredential``, run as ``STATE/bin/az``.

``AzureCliCredential`` runs ``az account get-access-token --output json --resource R [--tenant T]
[--subscription S]`` and parses ``accessToken`` plus ``expires_on`` (or the local-time ``expiresOn``); the
answer here has the Azure CLI's shape (``accessToken``, ``expiresOn``, ``expires_on``, ``subscription``,
``tenant``, ``tokenType``; no ``subscription`` when ``--tenant`` is given). The token comes from the
sandbox's Entra endpoint with the service principal's secret, as after ``az login --service-principal``.
Errors go to stderr as ``ERROR: …`` with exit 1, so the credential reports them as the CLI's own.
Stdlib only: it starts once per token.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

NOT_LOGGED_IN = "Please run 'az login' to setup account."
DEFAULT_RESOURCE = "https://management.core.windows.net/"
USER_AGENT = "AZURECLI/2.67.0 (cicd-tools sandbox az shim)"


class CliError(Exception):
    """An ``ERROR: …`` line and exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message}. This az stand-in supports `az account get-access-token` and `az account show`.")


def _config_dir() -> Path:
    return Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None


def _login() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The service-principal login and the profile's subscriptions. Raises: CliError when not logged in."""
    config = _config_dir()
    login = _read_json(config / "cicd-sandbox-login.json")
    profile = _read_json(config / "azureProfile.json")
    subscriptions = profile.get("subscriptions") if isinstance(profile, dict) else None
    if not isinstance(login, dict) or not isinstance(subscriptions, list) or not subscriptions:
        raise CliError(NOT_LOGGED_IN)
    return login, [s for s in subscriptions if isinstance(s, dict)]


def _request_token(login: dict[str, Any], tenant: str, scope: str) -> dict[str, Any]:
    """The client_credentials grant at the sandbox's Entra endpoint. Raises: CliError with the AADSTS text."""
    url = f"{str(login['authority']).rstrip('/')}/{urllib.parse.quote(tenant)}/oauth2/v2.0/token"
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": login["clientId"],
                                   "client_secret": login["clientSecret"], "scope": scope}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT})
    context = ssl.create_default_context(cafile=str(login["caBundle"]))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read()).get("error_description") or f"HTTP {err.code}"
        except ValueError:
            detail = f"HTTP {err.code}"
        raise CliError(str(detail).replace("\r\n", " ")) from None
    except (OSError, ValueError) as err:
        raise CliError(f"could not reach the sandbox's token endpoint {url}: {err}") from None


def get_access_token(args: argparse.Namespace) -> dict[str, Any]:
    """``az account get-access-token``."""
    if args.resource and args.scope:
        raise CliError("usage error: --resource/--resource-type/--scope")
    if args.resource_type:
        raise CliError("--resource-type is not implemented by the sandbox's az; give --resource or --scope")
    login, subscriptions = _login()
    subscription = next((s for s in subscriptions if s.get("isDefault")), subscriptions[0])
    if args.subscription:
        wanted = args.subscription.lower()
        match = [s for s in subscriptions if wanted in (str(s.get("id", "")).lower(), str(s.get("name", "")).lower())]
        if not match:
            raise CliError(f"Subscription '{args.subscription}' not found. Check the spelling and casing and try "
                           "again.")
        subscription = match[0]
    tenant = args.tenant or str(subscription.get("tenantId") or login["tenant"])
    scope = " ".join(args.scope) if args.scope else (args.resource or DEFAULT_RESOURCE).rstrip("/") + "/.default"
    answer = _request_token(login, tenant, scope)
    expires_on = int(time.time()) + int(answer.get("expires_in", 3599))
    result: dict[str, Any] = {
        "accessToken": answer["access_token"],
        "expiresOn": dt.datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": expires_on,
        "subscription": subscription.get("id"),
        "tenant": tenant,
        "tokenType": answer.get("token_type", "Bearer"),
    }
    if args.tenant:
        del result["subscription"]  # the CLI omits it for a token of an explicit tenant
    return result


def account_show(args: argparse.Namespace) -> dict[str, Any]:
    """``az account show``: the default subscription of the profile."""
    _, subscriptions = _login()
    return next((s for s in subscriptions if s.get("isDefault")), subscriptions[0])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="az", add_help=False)
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    account = groups.add_parser("account", add_help=False)
    commands = account.add_subparsers(dest="command", required=True, parser_class=_Parser)
    token = commands.add_parser("get-access-token", add_help=False)
    token.add_argument("--resource")
    token.add_argument("--scope", nargs="+")
    token.add_argument("--resource-type")
    token.add_argument("--tenant", "-t")
    token.add_argument("--subscription", "-s")
    token.set_defaults(run=get_access_token)
    show = commands.add_parser("show", add_help=False)
    show.add_argument("--subscription", "-s")
    show.set_defaults(run=account_show)
    for sub in (token, show):
        sub.add_argument("--output", "-o", default="json", choices=("json",))
        sub.add_argument("--only-show-errors", action="store_true")
        sub.add_argument("--debug", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        result = args.run(args)
    except CliError as err:
        sys.stderr.write(f"ERROR: {err}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
