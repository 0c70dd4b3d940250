"""RBAC propagation in the sandbox: a fresh role assignment grants nothing for a while (Azure: "role assignment
changes can take up to 10 minutes to take effect", Troubleshoot Azure RBAC), and the toolkit's retries cope with a
short delay: `storage smoke`'s denied budget and `firewall open`'s probe wait it out instead of calling the role
missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from cicd_tools.sandbox.runtime import Sandbox
from cicd_tools.storage.firewall import open_rule
from cicd_tools.storage.smoke import make_list_probe, smoke_test
from tests.integration.test_firewall_sandbox import CONTAINER, blobs, mgmt, prepare, ref, rules

ROLE = "Storage Blob Data Contributor"
DELAY = 2.0  # seconds: short, but several of the toolkit's retry steps long


def reassign_fresh(sb: Sandbox) -> None:
    """The CI principal's data role on the pointer account, removed and assigned again just now."""
    sb.control.remove_role(sb.layout.ci_principal, ROLE)
    sb.control.assign_role(sb.layout.ci_principal, ROLE)


def test_a_fresh_role_is_refused_with_permission_mismatch_until_it_propagates(sandbox_env: Sandbox) -> None:
    sb = sandbox_env
    prepare(sb)
    sb.control.set_account_properties(network_acls={"defaultAction": "Allow"})
    sb.control.set_propagation(role_delay=30.0)
    reassign_fresh(sb)
    with pytest.raises(HttpResponseError) as info:
        blobs(sb.blob_endpoint).get_container_client(CONTAINER).get_container_properties()
    assert info.value.error_code == "AuthorizationPermissionMismatch"  # AZURE_FACTS.md §4: an RBAC gap's code


def test_smoke_with_its_denied_budget_passes_once_a_fresh_role_propagates(
    sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox_env
    prepare(sb)
    sb.control.set_account_properties(network_acls={"defaultAction": "Allow"})
    sb.control.set_propagation(role_delay=DELAY)
    monkeypatch.delenv("CICD_RBAC_GRACE", raising=False)  # the default grace (10 s) is what users get
    reassign_fresh(sb)
    result = smoke_test(blobs(sb.blob_endpoint), CONTAINER, denied_budget=30.0)
    assert result.usable, result.failure
    lists = [r["status"] for r in sb.control.requests("blob")
             if (r["method"], r["origin"]) == ("GET", "agent") and r["path"].endswith(f"/{CONTAINER}")]
    assert 403 in lists and lists[-1] == 200  # refused first, then admitted: the retry did the work


def test_firewall_open_probe_waits_out_a_short_rbac_delay(sandbox_env: Sandbox, tmp_path: Path) -> None:
    sb = sandbox_env
    prepare(sb)
    sb.control.set_propagation(role_delay=DELAY)
    reassign_fresh(sb)
    probe = make_list_probe(blobs(sb.blob_endpoint), CONTAINER)
    opened = open_rule(mgmt(sb), ref(sb), sb.agent_ip, "it-rbac-delay", 600, probe=probe, grace=1.0, timeout=60)
    assert opened.reachable_after is not None and sb.agent_ip in rules(sb)
