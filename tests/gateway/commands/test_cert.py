"""posgw cert: a shop CA (made once, then reused) and a server certificate naming the gateway's
addresses, keys 0600 whatever the umask, the chain usable by a TLS server and verified by the CA."""

from __future__ import annotations

import ipaddress
import os
import pwd
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli import main


def make(tls: Path, *extra: str) -> int:
    old = os.umask(0o022)
    try:
        return main(["cert", "--dir", str(tls), *extra])
    finally:
        os.umask(old)


def test_makes_a_ca_and_a_server_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tls = tmp_path / "tls"
    assert make(tls, "--ip", "192.168.1.10", "--name", "gw.shop.lan", "--days", "30") == 0
    out = capsys.readouterr().out
    assert "made the shop CA" in out and f'tls_key_file = "{tls / "server.key"}"' in out
    modes = {p.name: p.stat().st_mode & 0o777 for p in tls.iterdir()}
    assert modes == {"ca.key": 0o600, "ca.pem": 0o644, "server.key": 0o600, "server.pem": 0o644}
    chain = x509.load_pem_x509_certificates((tls / "server.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    assert len(chain) == 2 and chain[1] == ca
    chain[0].verify_directly_issued_by(ca)
    alt = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["gw.shop.lan"]
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.1.10")]
    lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert 30 * 86400 <= lifetime.total_seconds() <= 30 * 86400 + 600
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "server.pem", tls / "server.key")  # a usable server pair


def test_a_second_run_reuses_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tls = tmp_path / "tls"
    assert make(tls, "--ip", "10.0.0.2") == 0
    ca_before, server_before = (tls / "ca.pem").read_bytes(), (tls / "server.pem").read_bytes()
    assert make(tls, "--ip", "10.0.0.2") == 0
    assert "reused the shop CA" in capsys.readouterr().out
    assert (tls / "ca.pem").read_bytes() == ca_before  # the tills keep trusting it
    assert (tls / "server.pem").read_bytes() != server_before


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root (CI runs as root)")
def test_owner_gets_the_server_key(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    assert make(tmp_path / "tls", "--ip", "10.0.0.2", "--owner", "nobody") == 0
    assert (tmp_path / "tls" / "server.key").stat().st_uid == nobody.pw_uid
    assert (tmp_path / "tls" / "ca.key").stat().st_uid == 0  # the CA key stays root's


@pytest.mark.parametrize(("args", "said"), [
    ([], "name the gateway"), (["--ip", "not-an-ip"], "--ip"),
    (["--ip", "10.0.0.2", "--owner", "no-such-usr"], "no user"),
])
def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str) -> None:
    assert make(tmp_path / "tls", *args) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "tls").exists()
