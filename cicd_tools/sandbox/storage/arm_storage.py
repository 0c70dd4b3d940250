"""Microsoft.Storage storageAccounts GET/PATCH, list and listKeys with Azure's semantics (AZURE_FACTS.md §4).

PATCH is not long-running and has no ETag: each ``networkAcls`` field it carries replaces the
stored one (a PATCH with ``ipRules`` replaces the whole list, so two concurrent read-modify-writes
lose a rule, as in Azure); ``tags`` replace all tags. IP rules are validated like the Storage
resource provider does, answering 400 ``InvalidValuesForRequestParameters`` (the code and message
Azure returns for a private address or too many rules: azure-cli #7417, #13828, azure-docs #60412).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import re
from typing import Any

from cicd_tools.sandbox.armbase import authenticate, authorize, check_resource_group, require_api_version
from cicd_tools.sandbox.layout import Account
from cicd_tools.sandbox.server import HttpError, Hub, Request, Response, Route, arm_error, json_response

RESOURCE_TYPE = "storageAccounts"
# Stable Microsoft.Storage versions: the specs' 2026-09-01 / 2025-06-01, what azure-mgmt-storage 25.3.0
# sends (2026-09-01), and what the older clients the toolkit allows (>=21.0) send.
API_VERSIONS = frozenset({
    "2026-09-01", "2026-06-01", "2026-04-01", "2025-08-01", "2025-06-01", "2025-01-01",
    "2024-01-01", "2023-05-01", "2023-04-01", "2023-01-01", "2022-09-01",
})
MAX_IP_RULES = 400
MAX_TAGS = 50
PATH = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
        r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)")
RULESET_HELP = "For more information, see - https://aka.ms/storagenetworkruleset"


def _invalid(field: str) -> HttpError:
    return HttpError(arm_error(400, "InvalidValuesForRequestParameters",
                               f"Values for request parameters are invalid: {field}. {RULESET_HELP}"))


def account_body(hub: Hub, acc: Account) -> dict[str, Any]:
    """The ARM representation of an account (the shape of specs/storage/examples)."""
    layout = hub.layout
    acls = copy.deepcopy(acc.network_acls)
    if not acls.get("ipv6Rules"):
        acls.pop("ipv6Rules", None)
    properties: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "creationTime": acc.created,
        "primaryLocation": layout.location,
        "statusOfPrimary": "available",
        "accessTier": "Hot",
        "minimumTlsVersion": "TLS1_2",
        "allowBlobPublicAccess": False,
        "supportsHttpsTrafficOnly": True,
        "isHnsEnabled": False,
        "publicNetworkAccess": acc.public_network_access,
        "networkAcls": acls,
        "encryption": {"keySource": "Microsoft.Storage",
                       "services": {"blob": {"enabled": True, "keyType": "Account"}}},
        "primaryEndpoints": {"blob": hub.blob_endpoint_of(acc.name).rstrip("/") + "/"},
    }
    if acc.allow_shared_key_access is not None:  # null means true, and Azure leaves it out
        properties["allowSharedKeyAccess"] = acc.allow_shared_key_access
    return {
        "id": layout.account_id(acc.name),
        "name": acc.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": layout.location,
        "kind": acc.kind,
        "sku": dict(acc.sku),
        "tags": dict(acc.tags),
        "properties": properties,
    }


def validate_ip_rule(value: object) -> str:
    """A public IPv4 address or CIDR with a prefix of at most /30. Raises: HttpError 400."""
    if not isinstance(value, str) or not value.strip():
        raise _invalid("networkAcls.ipRule[*].value")
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _invalid("networkAcls.ipRule[*].value") from None
    if network.version != 4:
        raise _invalid("networkAcls.ipRule[*].value")
    if "/" in text and network.prefixlen > 30:  # /31 and /32 are refused; write a single address instead
        raise _invalid("networkAcls.ipRule[*].value")
    if not network.is_global or network.is_multicast:  # RFC 1918, loopback, link-local, reserved, CGNAT
        raise _invalid("networkAcls.ipRule[*].value")
    return text


def _rules(value: object, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise _invalid(f"networkAcls.{field}[]")
    return value


def validate_network_acls(acls: object, refused: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The normalised ``networkAcls`` fields of a PATCH body. Raises: HttpError 400."""
    if not isinstance(acls, dict):
        raise _invalid("networkAcls")
    out: dict[str, Any] = {}
    if "defaultAction" in acls:
        if acls["defaultAction"] not in ("Allow", "Deny"):
            raise _invalid("networkAcls.defaultAction")
        out["defaultAction"] = acls["defaultAction"]
    if "bypass" in acls:
        bypass = acls["bypass"]
        parts = [p.strip() for p in bypass.split(",")] if isinstance(bypass, str) else [""]
        if not all(p in ("None", "Logging", "Metrics", "AzureServices") for p in parts):
            raise _invalid("networkAcls.bypass")
        out["bypass"] = bypass
    if "ipRules" in acls:
        rules = _rules(acls["ipRules"] if acls["ipRules"] is not None else [], "ipRules")
        if len(rules) > MAX_IP_RULES:
            raise _invalid("networkAcls.ipRules[]")
        for rule in rules:
            if rule.get("action") not in (None, "Allow"):
                raise _invalid("networkAcls.ipRule[*].action")
        out["ipRules"] = [{"value": validate_ip_rule(r.get("value")), "action": "Allow"} for r in rules]
    if "ipv6Rules" in acls:
        rules = _rules(acls["ipv6Rules"] if acls["ipv6Rules"] is not None else [], "ipv6Rules")
        for rule in rules:
            try:
                net = ipaddress.ip_network(str(rule.get("value", "")).strip(), strict=False)
            except ValueError:
                raise _invalid("networkAcls.ipv6Rule[*].value") from None
            if net.version != 6 or not net.is_global:
                raise _invalid("networkAcls.ipv6Rule[*].value")
        out["ipv6Rules"] = [{"value": str(r["value"]).strip(), "action": "Allow"} for r in rules]
    if "virtualNetworkRules" in acls:
        rules = _rules(acls["virtualNetworkRules"] or [], "virtualNetworkRules")
        for rule in rules:
            if not isinstance(rule.get("id"), str) or not _SUBNET.match(rule["id"]):
                raise _invalid("networkAcls.virtualNetworkRules[*].id")
            if rule.get("action") not in (None, "Allow"):
                raise _invalid("networkAcls.virtualNetworkRules[*].action")
        out["virtualNetworkRules"] = [{"id": r["id"], "action": "Allow", "state": "Succeeded"} for r in rules]
    if "resourceAccessRules" in acls:
        rules = _rules(acls["resourceAccessRules"] or [], "resourceAccessRules")
        for rule in rules:
            validate_resource_access_rule(rule, refused)
        out["resourceAccessRules"] = [{"tenantId": r["tenantId"], "resourceId": r["resourceId"]} for r in rules]
    return out


# Trusted access based on a managed identity: the resource types the Storage RP accepts in resourceAccessRules
# (it has validated every entry on PUT/PATCH since 2023; terraform-provider-azurerm #23383, azure-cli #25455).
TRUSTED_RESOURCE_TYPES = frozenset(t.lower() for t in (
    "Microsoft.ApiManagement/service", "Microsoft.Cache/redisEnterprise", "Microsoft.CognitiveServices/accounts",
    "Microsoft.Databricks/accessConnectors", "Microsoft.DataFactory/factories", "Microsoft.DataProtection/BackupVaults",
    "Microsoft.DataShare/accounts", "Microsoft.DocumentDB/databaseAccounts", "Microsoft.EventGrid/topics",
    "Microsoft.EventGrid/domains", "Microsoft.HealthcareApis/workspaces", "Microsoft.Insights/actionGroups",
    "Microsoft.MachineLearningServices/workspaces", "Microsoft.Media/mediaservices", "Microsoft.Purview/accounts",
    "Microsoft.RecoveryServices/vaults", "Microsoft.Search/searchServices", "Microsoft.Security/datascanners",
    "Microsoft.Sql/servers", "Microsoft.StreamAnalytics/streamingjobs", "Microsoft.Synapse/workspaces",
))
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_RESOURCE = re.compile(r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?"
                       r"/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)$", re.I)
_SUBNET = re.compile(r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.network"
                     r"/virtualnetworks/[^/]+/subnets/[^/]+$", re.I)


def validate_resource_access_rule(rule: dict[str, Any], refused: frozenset[str] = frozenset()) -> None:
    """A tenant GUID and the id of a resource type with trusted access (``refused``: types this RP version
    rejects, a control switch reproducing the field failure on Defender's rule). Raises: HttpError 400."""
    tenant, resource = rule.get("tenantId"), rule.get("resourceId")
    if not isinstance(tenant, str) or not _GUID.match(tenant):
        raise _invalid("networkAcls.resourceAccessRules[*].tenantId")
    match = _RESOURCE.match(resource) if isinstance(resource, str) else None
    if match is None:
        raise _invalid("networkAcls.resourceAccessRules[*].resourceId")
    kind = f"{match['ns']}/{match['type']}".lower()
    scoped_ok = match["rg"] is not None or kind == "microsoft.security/datascanners"  # Defender's is per subscription
    if kind not in TRUSTED_RESOURCE_TYPES or kind in refused or not scoped_ok:
        raise _invalid("networkAcls.resourceAccessRules[*].resourceId")


_REFUSED: dict[int, frozenset[str]] = {}


def refused_types(hub: Hub) -> frozenset[str]:
    return _REFUSED.get(id(hub.state), frozenset())


def set_refused_types(hub: Hub, types: list[str]) -> list[str]:
    """Make this RP refuse resourceAccessRules of ``types`` (as it did for Defender's rule in the field)."""
    _REFUSED[id(hub.state)] = frozenset(t.lower() for t in types)
    return sorted(_REFUSED[id(hub.state)])


def reset(hub: Hub) -> None:
    """The provider reset hook: the RP accepts every trusted type again."""
    _REFUSED.pop(id(hub.state), None)


def validate_tags(tags: object) -> dict[str, str]:
    """ARM tag limits: at most 50, names up to 512 characters, values up to 256. Raises: HttpError 400."""
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise HttpError(arm_error(400, "InvalidRequestContent", "The tags must be a map of strings."))
    if len(tags) > MAX_TAGS:
        raise HttpError(arm_error(400, "TooManyTags", f"The resource has {len(tags)} tags; at most {MAX_TAGS} "
                                  "tags are allowed."))
    for name, value in tags.items():
        if len(name) > 512 or any(c in name for c in "<>%&\\?/"):
            raise HttpError(arm_error(400, "InvalidTagNameCharacters" if len(name) <= 512 else
                                      "InvalidTagNameLength", f"The tag name '{name[:64]}' is invalid."))
        if len(value) > 256:
            raise HttpError(arm_error(400, "InvalidTagValueLength", f"The value of tag '{name}' is longer "
                                      "than 256 characters."))
    return dict(tags)


def _target(req: Request, hub: Hub, action: str) -> str:
    """Authenticate, check the api-version, the scope and the role; the account name. Raises: HttpError."""
    claims = authenticate(req, hub)
    require_api_version(req, API_VERSIONS, RESOURCE_TYPE)
    sub, group, name = req.params["sub"], req.params["rg"], req.params["account"]
    check_resource_group(req, hub, sub, group)
    authorize(hub, claims, hub.layout.account_id(name), action)
    if not hub.state.has_account(name):
        raise HttpError(arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Storage/storageAccounts/{name}' "
                                  f"under resource group '{group}' was not found. For more details please go to "
                                  "https://aka.ms/ARMResourceNotFoundFix"))
    return name


def get_account(req: Request, hub: Hub) -> Response:
    name = _target(req, hub, "Microsoft.Storage/storageAccounts/read")
    return json_response(200, account_body(hub, hub.state.account(name)))


def patch_account(req: Request, hub: Hub) -> Response:
    name = _target(req, hub, "Microsoft.Storage/storageAccounts/write")
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(arm_error(400, "InvalidRequestContent", "The request content must be a JSON object."))
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise HttpError(arm_error(400, "InvalidRequestContent", "'properties' must be a JSON object."))
    acls = (validate_network_acls(props["networkAcls"], refused_types(hub))
            if props.get("networkAcls") is not None else None)
    tags = validate_tags(body["tags"]) if body.get("tags") is not None else None
    updates: dict[str, Any] = {}
    if "allowSharedKeyAccess" in props:
        if props["allowSharedKeyAccess"] not in (True, False, None):
            raise _invalid("allowSharedKeyAccess")
        updates["allow_shared_key_access"] = props["allowSharedKeyAccess"]
    if props.get("publicNetworkAccess") is not None:
        if props["publicNetworkAccess"] not in ("Enabled", "Disabled", "SecuredByPerimeter"):
            raise _invalid("publicNetworkAccess")
        updates["public_network_access"] = props["publicNetworkAccess"]
    account = hub.state.update_account(name, network_acls=acls, tags=tags, **updates)
    return json_response(200, account_body(hub, account))


def list_accounts(req: Request, hub: Hub) -> Response:
    """StorageAccounts_ListByResourceGroup and StorageAccounts_List: the accounts the caller may read (ARM checks
    ``read`` at the scope listed; one page, no ``nextLink``)."""
    claims = authenticate(req, hub)
    require_api_version(req, API_VERSIONS, RESOURCE_TYPE)
    sub = req.params["sub"]
    if "rg" in req.params:
        check_resource_group(req, hub, sub, req.params["rg"])
    elif sub.lower() != hub.layout.subscription_id.lower():
        raise HttpError(arm_error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found."))
    names = [n for n in hub.state.account_names()
             if hub.state.authorize(str(claims.get("oid", "")), hub.layout.account_id(n),
                                    "Microsoft.Storage/storageAccounts/read")]
    if not names and "rg" in req.params:
        authorize(hub, claims, hub.layout.resource_group_id, "Microsoft.Storage/storageAccounts/read")
    return json_response(200, {"value": [account_body(hub, hub.state.account(n)) for n in sorted(names)]})


def _second_key(key: str) -> str:
    """key2: a second well-formed key, derived from key1 (the sandbox's Azurite knows key1 only)."""
    return base64.b64encode(hashlib.sha512(f"key2:{key}".encode()).digest()).decode()


def list_keys(req: Request, hub: Hub) -> Response:
    """StorageAccounts_ListKeys: key1 (the one Azurite accepts) and key2, with ``permissions: FULL``. Azure answers
    it whatever ``allowSharedKeyAccess`` says (the data plane refuses the key then, not ARM)."""
    name = _target(req, hub, "Microsoft.Storage/storageAccounts/listkeys/action")
    created = hub.state.account(name).created
    key = hub.account_key(name)
    return json_response(200, {"keys": [
        {"keyName": "key1", "value": key, "permissions": "FULL", "creationTime": created},
        {"keyName": "key2", "value": _second_key(key), "permissions": "FULL", "creationTime": created},
    ]})


_ACCOUNTS_IN_GROUP = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
                      r"/providers/Microsoft\.Storage/storageAccounts")
routes = [
    Route("GET", PATH, get_account),
    Route("PATCH", PATH, patch_account),
    Route("GET", _ACCOUNTS_IN_GROUP, list_accounts),
    Route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Storage/storageAccounts", list_accounts),
    Route("POST", PATH + r"/listKeys", list_keys),
]
