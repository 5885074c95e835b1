"""``posgw cert``: a local certificate authority for the shop and a server certificate signed by it.

Tills talk to the gateway over the shop LAN; with ``gateway.tls = true`` they need a certificate
they trust. A public CA cannot certify ``192.168.1.10``, so the shop gets its own small CA:
``ca.pem`` is installed on each till once (see the README), and the server certificate can be
renewed any time without touching the tills again.

Files in ``--dir`` (default ``/etc/posgw/tls``):

- ``ca.key`` (0600) and ``ca.pem``: the CA, made once and reused while they exist;
- ``server.key`` (0600, owned by ``--owner`` when given, so the service user can read it) and
  ``server.pem`` (the server certificate followed by the CA certificate: the chain to serve).

Invariants: keys are written 0600 through a temporary file renamed into place, whatever the
umask; an existing CA is never overwritten; the server certificate names every ``--name`` (DNS)
and ``--ip`` in its subjectAltName (what clients check) and is valid ``--days`` (397 by default:
the longest some client platforms accept). Keys are ECDSA P-256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="/etc/posgw/tls", type=Path, help="where the files go")
    parser.add_argument("--name", action="append", default=[], metavar="DNS",
                        help="a DNS name the tills use for the gateway (repeatable)")
    parser.add_argument("--ip", action="append", default=[], metavar="ADDRESS",
                        help="an IP address the tills use for the gateway (repeatable)")
    parser.add_argument("--days", type=int, default=SERVER_DAYS, help="server certificate validity in days")
    parser.add_argument("--shop", default="posgw shop", help="the shop's name in the CA's subject")
    parser.add_argument("--owner", default=None, metavar="USER",
                        help="give server.key to this user (the service user, e.g. posgw)")


def run(args: argparse.Namespace) -> int:
    if not args.name and not args.ip:
        print("posgw cert: name the gateway as the tills reach it: --ip 192.168.1.10 and/or "
              "--name gateway.shop.lan", file=sys.stderr)
        return 2
    try:
        ips = [ipaddress.ip_address(a) for a in args.ip]
    except ValueError as exc:
        print(f"posgw cert: --ip: {exc}", file=sys.stderr)
        return 2
    owner = None
    if args.owner:
        import pwd  # POSIX only

        try:
            owner = pwd.getpwnam(args.owner)
        except KeyError:
            print(f"posgw cert: --owner: no user {args.owner!r} (create it first)", file=sys.stderr)
            return 2
    out: Path = args.dir
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    ca_key, ca_cert, made = load_or_make_ca(out, args.shop)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = server_certificate(key, ca_key, ca_cert, args.name, ips, args.days)
    write_private(out / "server.key", key, uid=owner.pw_uid if owner else None)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    write_file(out / "server.pem", chain, 0o644)
    print(f"{'made' if made else 'reused'} the shop CA: {out / 'ca.pem'} (install it on each till once)")
    print(f"server certificate for {', '.join([*args.name, *args.ip])}, valid {args.days} days:")
    print("  in the config's [gateway]:")
    print("    tls = true")
    print(f'    tls_cert_file = "{out / "server.pem"}"')
    print(f'    tls_key_file = "{out / "server.key"}"')
    print("  then: systemctl reload posgw (SIGHUP loads a renewed certificate)")
    return 0


def load_or_make_ca(out: Path, shop: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    """The CA in ``out`` (ca.key, ca.pem) if both exist, else a new one written there."""
    key_path, cert_path = out / "ca.key", out / "ca.pem"
    if key_path.exists() and cert_path.exists():
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"posgw cert: {key_path} is not an EC key made by posgw cert")
        return loaded, x509.load_pem_x509_certificate(cert_path.read_bytes()), False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{shop} local CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, shop)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert, True


def server_certificate(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
    names: list[str], ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address], days: int,
) -> x509.Certificate:
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ip) for ip in ips]
    now = dt.datetime.now(dt.UTC)
    common = names[0] if names else str(ips[0])
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def write_private(path: Path, key: ec.EllipticCurvePrivateKey, *, uid: int | None = None) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    write_file(path, data, 0o600, uid=uid)


def write_file(path: Path, data: bytes, mode: int, *, uid: int | None = None) -> None:
    """Write ``data`` to ``path`` with exactly ``mode`` (umask ignored), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, -1)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
