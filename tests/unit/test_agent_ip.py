"""Agent IP: two echo services must agree, and only public IPv4 addresses are usable in IP rules."""

from __future__ import annotations

import pytest
import requests
import responses

from cicd_tools.storage.agent_ip import AgentIpError, parse_echo_body, resolve_agent_ip, validate_rule_ip
from cicd_tools.support.errors import ExitCode

ECHO_A = "https://echo-a.test/ip"
ECHO_B = "https://echo-b.test/json"
ECHO_C = "https://echo-c.test/"


@pytest.mark.parametrize("address", ["52.151.10.20", " 20.1.2.3\n", "8.8.8.8"])
def test_public_ipv4_is_accepted_and_normalised(address: str) -> None:
    assert validate_rule_ip(address) == address.strip()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("100.64.3.4", "carrier-grade NAT"),
        ("203.0.113.7", "private"),  # documentation range: never routable
        ("0.0.0.0", "reserved"),
    ],
)
def test_non_public_ipv4_is_refused_with_the_same_region_explanation(address: str, kind: str) -> None:
    with pytest.raises(AgentIpError) as info:
        validate_rule_ip(address)
    assert kind in info.value.message
    assert "same Azure region" in info.value.hint and "private endpoint" in info.value.hint
    assert info.value.exit_code == ExitCode.USAGE


def test_ipv6_is_refused_because_ip_rules_are_ipv4_only() -> None:
    with pytest.raises(AgentIpError, match="IPv4 only"):
        validate_rule_ip("2001:db8::1")


def test_garbage_is_refused_as_not_an_address() -> None:
    with pytest.raises(AgentIpError, match="not an IP address"):
        validate_rule_ip("my-agent")


@pytest.mark.parametrize(
    ("body", "expected"),
    [("52.1.2.3\n", "52.1.2.3"), ('{"ip": "52.1.2.3"}', "52.1.2.3"), ("  52.1.2.3 extra", "52.1.2.3")],
)
def test_echo_bodies_in_text_and_json_form_are_parsed(body: str, expected: str) -> None:
    assert parse_echo_body(body) == expected


@pytest.mark.parametrize("body", ["<html>blocked</html>", '{"address": "52.1.2.3"}', ""])
def test_echo_bodies_without_an_address_are_rejected(body: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_echo_body(body)


@responses.activate
def test_two_agreeing_echo_services_give_the_ip_and_name_their_sources() -> None:
    responses.get(ECHO_A, body="52.151.10.20\n")
    responses.get(ECHO_B, json={"ip": "52.151.10.20"})
    result = resolve_agent_ip([ECHO_A, ECHO_B, ECHO_C], session=requests.Session())
    assert result.ip == "52.151.10.20"
    assert result.sources == (ECHO_A, ECHO_B)
    assert len(responses.calls) == 2  # the third service is not asked when two agree


@responses.activate
def test_disagreeing_echo_services_are_an_error_naming_both_answers() -> None:
    responses.get(ECHO_A, body="52.151.10.20")
    responses.get(ECHO_B, json={"ip": "52.151.10.21"})
    with pytest.raises(AgentIpError) as info:
        resolve_agent_ip([ECHO_A, ECHO_B], session=requests.Session())
    assert "52.151.10.20" in info.value.message and "52.151.10.21" in info.value.message
    assert "--ip" in info.value.hint


@responses.activate
def test_a_failing_echo_service_is_replaced_by_the_next_one() -> None:
    responses.get(ECHO_A, status=503)
    responses.get(ECHO_B, body="52.151.10.20")
    responses.get(ECHO_C, body="52.151.10.20")
    assert resolve_agent_ip([ECHO_A, ECHO_B, ECHO_C], session=requests.Session()).sources == (ECHO_B, ECHO_C)


@responses.activate
def test_fewer_than_two_answers_is_an_error_listing_each_failure() -> None:
    responses.get(ECHO_A, body=requests.exceptions.ConnectionError("no route"))
    responses.get(ECHO_B, body="52.151.10.20")
    with pytest.raises(AgentIpError) as info:
        resolve_agent_ip([ECHO_A, ECHO_B], session=requests.Session())
    assert "1 of the echo services answered" in info.value.message
    assert ECHO_A in info.value.message


def test_a_single_configured_echo_service_is_not_trusted() -> None:
    with pytest.raises(AgentIpError, match="two independent"):
        resolve_agent_ip([ECHO_A])


@responses.activate
def test_echo_services_agreeing_on_a_private_address_are_refused() -> None:
    responses.get(ECHO_A, body="10.1.0.4")
    responses.get(ECHO_B, body="10.1.0.4")
    with pytest.raises(AgentIpError, match="private"):
        resolve_agent_ip([ECHO_A, ECHO_B], session=requests.Session())


class _NoNetwork:
    def get(self, url: str, *, timeout: float, headers: dict[str, str]) -> object:
        raise AssertionError("an explicit --ip must not ask any echo service")


def test_explicit_ip_bypasses_the_echo_services_but_is_still_validated() -> None:
    assert resolve_agent_ip([ECHO_A, ECHO_B], explicit_ip="52.151.10.20", session=_NoNetwork()).sources == ("--ip",)
    with pytest.raises(AgentIpError):
        resolve_agent_ip([ECHO_A, ECHO_B], explicit_ip="192.168.0.10", session=_NoNetwork())
