"""The CI agent's public egress IPv4 address: asked of two independent echo services, then validated.

Storage IP rules accept public IPv4 only (AZURE_FACTS.md §4). An agent whose traffic reaches the
account privately (same Azure region, VNet, private endpoint) is never matched by an IP rule, so a
private or shared address is refused with an explanation instead of a rule that can never work.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)

# RFC 6598 shared address space (carrier-grade NAT): ``ipaddress`` calls it neither private nor global.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

PRIVATE_EGRESS_HINT = (
    "Storage IP rules only match public IPv4 source addresses. They have no effect on traffic from the same "
    "Azure region as the account (hosted agents there egress over Azure's private network) or on traffic "
    "that arrives through a private endpoint or a VNet. For those agents use a self-hosted agent inside the "
    "VNet with a private endpoint (or a VNet rule) instead of a temporary IP rule."
)


class AgentIpError(UsageError):
    """The agent's egress IP could not be determined, or it cannot be used in a storage IP rule."""

    default_hint = PRIVATE_EGRESS_HINT


@dataclass(frozen=True)
class AgentIp:
    """The validated public IPv4 address and where it came from."""

    ip: str
    sources: tuple[str, ...]


class _HttpSession(Protocol):
    def get(self, url: str, *, timeout: float, headers: dict[str, str]) -> Any: ...


def validate_rule_ip(text: str) -> str:
    """The canonical IPv4 address in ``text`` if a storage IP rule can use it.

    Raises: AgentIpError for malformed, IPv6, private, loopback, link-local, CGNAT or reserved addresses.
    """
    raw = text.strip()
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise AgentIpError(f"{raw!r} is not an IP address.", hint="Pass one public IPv4 address.") from None
    if ip.version == 6:
        raise AgentIpError(
            f"{ip} is an IPv6 address; storage IP rules are IPv4 only.",
            hint="Make the agent egress over IPv4 (or pass --ip with its public IPv4 address). "
            + PRIVATE_EGRESS_HINT,
        )
    kind = None
    if ip.is_loopback:
        kind = "a loopback address"
    elif ip.is_link_local:
        kind = "a link-local address"
    elif ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        kind = "a reserved, non-routable address"
    elif ip in _CGNAT:
        kind = "a carrier-grade NAT (100.64.0.0/10) address"
    elif ip.is_private or not ip.is_global:
        kind = "a private (RFC 1918 or special-purpose) address"
    if kind:
        raise AgentIpError(f"{ip} is {kind}; a storage IP rule cannot match it.")
    return str(ip)


def parse_echo_body(body: str) -> str:
    """The address in an echo service's answer: plain text or JSON ``{"ip": ...}``.

    Raises: ValueError when the body holds no address.
    """
    text = body.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except RecursionError:  # an answer nested deeper than the stack: not an address either
            raise ValueError("JSON answer nested too deeply") from None
        if not isinstance(data, dict) or not isinstance(data.get("ip"), str):
            raise ValueError("JSON answer without an 'ip' string")
        text = data["ip"].strip()
    first = text.split()[0] if text.split() else ""
    ipaddress.ip_address(first)  # raises ValueError on anything that is not an address
    return first


def resolve_agent_ip(
    echo_urls: Sequence[str],
    *,
    explicit_ip: str | None = None,
    session: _HttpSession | None = None,
    timeout: float = 5.0,
) -> AgentIp:
    """The agent's public IPv4: ``explicit_ip`` if given, else two echo services that must agree.

    Echo URLs are asked in order until two have answered, so one failing service is replaced by the next.

    Raises: AgentIpError when fewer than two services answer, when they disagree, or when the address
    cannot be used in an IP rule.
    """
    if explicit_ip:
        return AgentIp(validate_rule_ip(explicit_ip), ("--ip",))
    urls = [u for u in echo_urls if u]
    if len(urls) < 2:
        raise AgentIpError(
            "two independent IP echo services are needed to trust the detected address; "
            f"{len(urls)} configured.",
            hint="List at least two in CICD_IP_ECHO_URLS (comma-separated), or pass --ip.",
        )
    if session is None:
        import requests

        session = requests.Session()
    answers: list[tuple[str, str]] = []
    failures: list[str] = []
    for url in urls:
        if len(answers) == 2:
            break
        try:
            response = session.get(url, timeout=timeout, headers={"Accept": "text/plain, application/json"})
            response.raise_for_status()
            answers.append((url, parse_echo_body(response.text)))
        except Exception as exc:  # any failure of one service just moves on to the next
            log.info("IP echo %s failed: %s", url, exc)
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    if len(answers) < 2:
        raise AgentIpError(
            f"could not determine the agent's public IP: {len(answers)} of the echo services answered"
            f" ({'; '.join(failures) or 'no answers'}).",
            hint="Check outbound HTTPS from the agent, set CICD_IP_ECHO_URLS, or pass --ip explicitly.",
        )
    (url_a, ip_a), (url_b, ip_b) = answers
    if ipaddress.ip_address(ip_a) != ipaddress.ip_address(ip_b):
        raise AgentIpError(
            f"the IP echo services disagree: {url_a} saw {ip_a}, {url_b} saw {ip_b}. The agent egresses"
            " through several addresses (load-balanced NAT or a proxy): one IP rule would not cover it.",
            hint="Pass --ip for a fixed egress address (NAT gateway), or use a self-hosted agent in a VNet.",
        )
    return AgentIp(validate_rule_ip(ip_a), (url_a, url_b))
