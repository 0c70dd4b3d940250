"""The names of the flow's configuration keys, their variables and flags: light, so the CLI parser can use them
without importing pydantic (``config.py`` holds the model)."""

from __future__ import annotations

STEP_NAMES = ("firewall-open", "smoke", "register", "pointers", "adf-run", "aml-verify", "model-mirror",
              "firewall-close")
# The section that switches each step on or off (firewall-close follows firewall-open).
STEP_SECTIONS = {
    "firewall-open": "firewall",
    "firewall-close": "firewall",
    "smoke": "smoke",
    "register": "code",
    "pointers": "pointer",
    "adf-run": "adf",
    "aml-verify": "verify",
    "model-mirror": "mirror",
}

# Scalar keys that the environment and the command line may set: key path -> (environment variable, flag).
OVERRIDABLE: dict[str, tuple[str, str]] = {
    "azure.subscription-id": ("CICD_SUBSCRIPTION_ID", "--subscription-id"),
    "azure.resource-group": ("CICD_RESOURCE_GROUP", "--resource-group"),
    "azure.workspace": ("CICD_WORKSPACE", "--workspace"),
    "azure.factory": ("CICD_FACTORY", "--factory"),
    "azure.arm-endpoint": ("CICD_ARM_ENDPOINT", "--arm-endpoint"),
    "storage.account": ("CICD_STORAGE_ACCOUNT", "--account"),
    "storage.blob-endpoint": ("CICD_BLOB_ENDPOINT", "--blob-endpoint"),
    "storage.container": ("CICD_POINTER_CONTAINER", "--container"),
    "firewall.ip": ("CICD_AGENT_IP", "--ip"),
    "firewall.ttl": ("CICD_FIREWALL_TTL", "--ttl"),
    "firewall.timeout": ("CICD_FIREWALL_TIMEOUT", "--firewall-timeout"),
    "firewall.lease-id": ("CICD_LEASE_ID", "--lease-id"),
    "firewall.state-file": ("CICD_FIREWALL_STATE_FILE", "--state-file"),
    "code.version": ("CICD_CODE_VERSION", "--code-version"),
    "adf.timeout": ("CICD_ADF_TIMEOUT", "--adf-timeout"),
    "report.path": ("CICD_REPORT", "--report"),
    "mirror.name": ("CICD_MODEL_NAME", "--model-name"),
}
SKIP_ENV = "CICD_FLOW_SKIP"
CONFIG_ENV = "CICD_CONFIG"
PATH_KEYS = ("firewall.state-file", "report.path")  # relative paths in the file are relative to the file
# environment variable -> the config file's key (the same name in the file, the environment and on the command line)
ENV_KEYS = {var: key for key, (var, _flag) in OVERRIDABLE.items()}
# ``Settings`` field -> the config key that holds it
SETTING_KEYS = {
    "subscription_id": "azure.subscription-id", "resource_group": "azure.resource-group",
    "workspace": "azure.workspace", "factory": "azure.factory", "arm_endpoint": "azure.arm-endpoint",
    "storage_account": "storage.account", "blob_endpoint": "storage.blob-endpoint",
    "pointer_container": "storage.container",
}
