"""Azurite's start-up under parallel test workers: a port taken by someone else is never mistaken for Azurite."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cicd_tools.sandbox.certs import CertBundle, make_certs
from cicd_tools.sandbox.storage import azurite
from cicd_tools.support.errors import ConfigError


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process (here: this test) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture
def certs(tmp_path: Path) -> CertBundle:
    return make_certs(tmp_path / "certs")


def test_a_port_someone_else_listens_on_is_an_error_naming_eaddrinuse(
    taken_port: int, certs: CertBundle, tmp_path: Path
) -> None:
    # The other listener accepts connections; only Azurite's own words tell that it did not get the port.
    with pytest.raises(ConfigError) as raised:
        azurite.start_azurite(tmp_path / "data", certs, port=taken_port)
    assert "EADDRINUSE" in raised.value.message


def test_a_free_port_taken_before_azurite_binds_it_is_replaced_by_another(
    taken_port: int, certs: CertBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_port = azurite.free_port
    offered = iter([taken_port])
    monkeypatch.setattr(azurite, "free_port", lambda: next(offered, None) or real_free_port())
    process = azurite.start_azurite(tmp_path / "data", certs)
    try:
        assert process.port != taken_port
        assert process.process.poll() is None
        assert f"listens on https://127.0.0.1:{process.port}" in process.log_file.read_text()
    finally:
        process.stop()
