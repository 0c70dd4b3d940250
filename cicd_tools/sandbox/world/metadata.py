"""``GET /metadata/endpoints``: the sandbox described as an Azure cloud (ARM's cloud metadata shape).

azure-ai-ml reads ``name``, ``portal``, ``resourceManager``, ``authentication.loginEndpoint`` and
``suffixes.storage`` (``_azure_environments._convert_arm_to_cli``); api-version 2022-09-01 and later
answer a list of clouds, older ones a single object, as ARM does.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.sandbox.server import Hub, Request, Response, Route, json_response
from cicd_tools.sandbox.storage.connect_proxy import STORAGE_SUFFIX

CLOUD_NAME = "CicdSandbox"


def cloud_metadata(hub: Hub) -> dict[str, Any]:
    """The sandbox cloud in ARM's metadata shape."""
    arm = hub.arm_endpoint.rstrip("/")
    return {
        "name": CLOUD_NAME,
        "portal": "https://portal.sandbox.localhost",
        "resourceManager": arm + "/",
        "authentication": {
            "loginEndpoint": arm + "/",
            "audiences": [arm + "/", arm],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        # ``{account}.blob.core.sandbox.localhost``: azure-storage finds the account name of a key credential only
        # in a ``*.blob.core.*`` host; the storage proxy (``storage/connect_proxy.py``) stands in for DNS.
        "suffixes": {"storage": STORAGE_SUFFIX, "keyVaultDns": "vault.sandbox.localhost"},
        "batch": "",
        "media": "",
        "graph": "",
        "graphAudience": "",
        "sqlManagement": "",
    }


def get_metadata(req: Request, hub: Hub) -> Response:
    version = req.param("api-version") or ""
    cloud = cloud_metadata(hub)
    return json_response(200, [cloud] if version >= "2022-09-01" else cloud)


routes = [Route("GET", r"/metadata/endpoints", get_metadata, public=True)]  # served without a token, as by ARM
