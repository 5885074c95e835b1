"""``posgw doctor [FILE]``: is this gateway set up to work? One line per check:
``OK|WARN|FAIL name: what was found (fix: what to do)``; exit 1 when any check FAILs.

Checks, in order: ``config`` (every ``check-config`` finding), ``driver <name>`` (the driver's own
check: devices present, through :func:`gateway.driver.driver_check`), ``listener`` (what answers
on ``listen_host:listen_port``), ``tls`` (the gateway's certificate: expiry, names), ``core``
(reachability: GetProgram within ``--timeout``), ``core tls`` (the core's certificate verified
as the gateway would, and its expiry), ``clock`` (skew to the core, from the core's
``GetBalances.snapshot_at``), ``disk`` (free space where the data lives), ``outbox``
(``PRAGMA quick_check`` through a read-only connection), ``permissions`` (the data, the TLS key
and the config readable by nobody else, writable by the service user).

Invariants: the doctor changes nothing (the outbox is opened read-only, no file is created or
chmod-ed); every network call has a deadline; a check that cannot run says so as a WARN or
FAIL naming why, and the other checks still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import shutil
import socket
import sqlite3
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.commands import check_config
from gateway.config import ConfigErrors, GatewayConfig, load_config
from gateway.driver import driver_info

DEFAULT_CONFIG = "/etc/posgw/posgw.toml"
CERT_WARN_DAYS = 30
SKEW_WARN_S = 2.0
SKEW_FAIL_S = 30.0
DISK_FAIL_BYTES = 200 * 1024 * 1024
DISK_WARN_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    level: str  # OK, WARN or FAIL
    name: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        fix = f" (fix: {self.fix})" if self.fix and self.level != "OK" else ""
        return f"{self.level:<4} {self.name}: {self.message}{fix}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", nargs="?", default=DEFAULT_CONFIG,
                        help=f"gateway config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--user", metavar="NAME", default=None,
                        help="the service user whose access is checked (default: who runs it)")
    parser.add_argument("--timeout", type=float, default=3.0, help="deadline of each network check, seconds")


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args.file, user=args.user, timeout=args.timeout)
    for check in checks:
        print(check)
    failed = [c.name for c in checks if c.level == "FAIL"]
    print(f"{len(failed)} FAIL, {sum(c.level == 'WARN' for c in checks)} WARN: "
          + (f"fix {', '.join(dict.fromkeys(failed))} first" if failed else "nothing stops the gateway"))
    return 1 if failed else 0


def diagnose(file: str, *, user: str | None = None, timeout: float = 3.0) -> list[Check]:
    try:
        config = load_config(file)
    except ConfigErrors as exc:
        return [Check("FAIL", "config", f"{e.key}: {e.problem}", e.fix) for e in exc.errors]
    out = _config_checks(config, user)
    steps = (_listener, _gateway_tls, _each_core(_core), _each_core(_core_tls), _disk, _outbox, _permissions)
    for step in steps:
        try:
            out.extend(step(config, timeout, user))
        except Exception as exc:  # one broken check must not hide the others
            out.append(Check("FAIL", step.__name__.strip("_"), f"the check itself failed: {exc!r}",
                             "report this bug"))
    return out


Step = Callable[[GatewayConfig, float, "str | None"], list[Check]]


def _each_core(step: Step) -> Step:
    """``step`` run once per entry of a comma-separated ``core.address`` (each core replica is
    checked on its own: one dead replica is a FAIL naming it, not a pass through round robin)."""
    def each(config: GatewayConfig, timeout: float, user: str | None) -> list[Check]:
        addresses = [a.strip() for a in config.core.address.split(",") if a.strip()]
        if len(addresses) <= 1:
            return step(config, timeout, user)
        out: list[Check] = []
        for address in addresses:
            one = config.model_copy(update={"core": config.core.model_copy(update={"address": address})})
            out.extend(step(one, timeout, user))
        return out
    each.__name__ = step.__name__
    return each


# ------------------------------------------------------------------ config and drivers


def _config_checks(config: GatewayConfig, user: str | None) -> list[Check]:
    problems = check_config.findings(config, user=user)
    out: list[Check] = []
    by_driver: dict[str, list[Check]] = {n: [] for n in config.enabled_drivers()}
    for p in problems:
        name = p.key.split(".")[1] if p.key.startswith("drivers.") and p.key.count(".") >= 1 else ""
        if name in by_driver:
            by_driver[name].append(Check(p.level, f"driver {name}", f"{p.key}: {p.message}", p.fix))
        else:
            out.append(Check(p.level, "config", f"{p.key}: {p.message}", p.fix))
    if not out:
        out.append(Check("OK", "config", f"{config.source}: no problems"))
    for name, found in by_driver.items():
        out.extend(found or [Check("OK", f"driver {name}", f"{driver_info(name).title}: its checks pass")])
    return out


# ------------------------------------------------------------------ the listener and its certificate


def _listener(config: GatewayConfig, timeout: float, _: str | None) -> list[Check]:
    gw = config.gateway
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(gw.listen_host, gw.listen_host)
    where = f"{gw.listen_host}:{gw.listen_port}"
    if gw.listen_port == 0:
        return [Check("WARN", "listener", "listen_port = 0: a new port at every start, tills cannot find it",
                      "set a fixed listen_port (8080, or 8443 with TLS)")]
    if gw.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # liveness only: the certificate is the tls check's
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, gw.listen_port, timeout=timeout,
                                                                        context=context)
    else:
        conn = http.client.HTTPConnection(host, gw.listen_port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = response.read(65536)
    except ConnectionRefusedError:
        return [Check("WARN", "listener", f"nothing listens on {where}: the gateway is not running",
                      "systemctl start posgw (journalctl -u posgw says why it stopped)")]
    except (OSError, http.client.HTTPException) as exc:
        return [Check("FAIL", "listener", f"{where} does not answer as posgw: {exc}",
                      "another program may hold the port (ss -ltnp), or the TLS setting differs")]
    finally:
        conn.close()
    try:
        health = json.loads(body)
        status = str(health["status"])
    except (ValueError, KeyError, TypeError):
        return [Check("FAIL", "listener", f"{where} is held by another program (HTTP {response.status})",
                      "stop it (ss -ltnp shows which) or choose another listen_port")]
    if response.status != 200:
        reasons = ", ".join(str(r) for r in health.get("problems", [])) or status
        return [Check("FAIL", "listener", f"posgw on {where} is not serving: {reasons}",
                      "see /healthz and /status; journalctl -u posgw")]
    level = "OK" if status == "ok" else "WARN"
    checks = [Check(level, "listener", f"posgw answers on {where}: {status}",
                    "see /healthz (a salvage to acknowledge, a driver alarm)")]
    queued = health.get("rejected") or 0
    if queued:  # refused by the core: not applied until an operator retries or resolves them
        checks.append(Check("WARN", "operator queue", f"{queued} document(s) the core refused are waiting",
                            "posgw queue list; retry once the cause is fixed, or resolve with a note"))
    return checks


def _gateway_tls(config: GatewayConfig, _: float, __: str | None) -> list[Check]:
    gw = config.gateway
    if not gw.tls:
        return []
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(Path(gw.tls_cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        return [Check("FAIL", "tls", f"{gw.tls_cert_file} is not a readable PEM certificate: {exc}",
                      "make one with `posgw cert`")]
    out = [_expiry("tls", cert.not_valid_after_utc, gw.tls_cert_file, "renew: posgw cert, then "
                   "systemctl reload posgw")]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in alt.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    if gw.listen_host not in ("0.0.0.0", "::", "") and gw.listen_host not in names:
        out.append(Check("WARN", "tls", f"the certificate names {', '.join(names) or 'nothing'}, not "
                         f"{gw.listen_host}: tills checking the name refuse it",
                         f"posgw cert --ip {gw.listen_host} (the CA stays the same)"))
    return out


def _expiry(name: str, not_after: dt.datetime, what: str, fix: str) -> Check:
    left = not_after - dt.datetime.now(dt.UTC)
    if left.total_seconds() <= 0:
        return Check("FAIL", name, f"{what} expired on {not_after:%Y-%m-%d}", fix)
    if left.days < CERT_WARN_DAYS:
        return Check("WARN", name, f"{what} expires in {left.days} days ({not_after:%Y-%m-%d})", fix)
    return Check("OK", name, f"{what} valid until {not_after:%Y-%m-%d}")


# ------------------------------------------------------------------ the core


def _core(config: GatewayConfig, timeout: float, _: str | None) -> list[Check]:
    import grpc

    from gateway.core_client import CoreTarget, channel_credentials
    from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
    from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
    from gateway.errors import ConfigError

    core = config.core
    target = CoreTarget(core.address, core.tls, core.ca_file, core.cert_file, core.key_file, core.server_name)
    options = [("grpc.ssl_target_name_override", core.server_name)] if core.server_name else []
    try:
        channel = (grpc.secure_channel(core.address, channel_credentials(target), options) if core.tls
                   else grpc.insecure_channel(core.address, options))
    except ConfigError as exc:
        return [Check("FAIL", "core", f"{exc.key}: {exc.problem}", exc.fix)]
    with channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        began = time.monotonic()
        try:
            program = stub.GetProgram(pb.GetProgramRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            return [Check("FAIL", "core", f"{core.address} did not answer ({getattr(code, 'name', code)}: "
                          f"{detail})", "check core.address, core.tls and the network or firewall to the "
                          "core; meanwhile tills are answered offline and receipts wait in the outbox"),
                    Check("WARN", "clock", "not checked: the core did not answer")]
        took_ms = (time.monotonic() - began) * 1000
        out = [Check("OK", "core", f"{core.address} answered in {took_ms:.0f} ms "
                     f"(program {program.program_id or '-'} version {program.version[:12] or '-'})")]
        out.append(_clock(stub, pb, timeout))
    return out


def _clock(stub: Any, pb: Any, timeout: float) -> Check:
    """Skew from the core's clock: GetBalances' snapshot_at against the midpoint of the call."""
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    future = Timestamp()
    future.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=3650))  # nobody: one tiny page
    before = time.time()
    try:
        reply = stub.GetBalances(pb.GetBalancesRequest(active_since=future, page_size=1), timeout=timeout)
    except grpc.RpcError as exc:
        return Check("WARN", "clock", f"not checked: GetBalances failed ({exc})", "see the core check")
    after = time.time()
    if not reply.HasField("snapshot_at"):
        return Check("WARN", "clock", "not checked: the core does not say its time (no snapshot_at)",
                     "keep this machine on NTP (timedatectl set-ntp true)")
    skew = reply.snapshot_at.ToDatetime(dt.UTC).timestamp() - (before + after) / 2
    margin = (after - before) / 2
    said = f"{skew:+.1f} s from the core (±{margin:.1f} s)"
    if abs(skew) - margin > SKEW_FAIL_S:
        return Check("FAIL", "clock", said, "synchronise both clocks: timedatectl set-ntp true")
    if abs(skew) - margin > SKEW_WARN_S:
        return Check("WARN", "clock", said, "synchronise both clocks: timedatectl set-ntp true")
    return Check("OK", "clock", said)


def _core_tls(config: GatewayConfig, timeout: float, _: str | None) -> list[Check]:
    core = config.core
    if not core.tls or core.address.startswith("unix:"):
        return []
    from cryptography import x509

    host, _, port = core.address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context(cafile=core.ca_file or None)
    context.set_alpn_protocols(["h2"])
    if core.cert_file and core.key_file:
        try:
            context.load_cert_chain(core.cert_file, core.key_file)
        except (OSError, ssl.SSLError) as exc:
            return [Check("FAIL", "core tls", f"the client certificate cannot be used: {exc}",
                          "fix core.cert_file / core.key_file")]
    name = core.server_name or host
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        return [Check("FAIL", "core tls", f"the core's certificate is not trusted: {exc.verify_message}",
                      "set core.ca_file to the CA that signed it, or core.server_name to its name")]
    except (OSError, ssl.SSLError) as exc:
        return [Check("FAIL", "core tls", f"no TLS handshake with {core.address}: {exc}",
                      "is the core serving TLS there? (core.tls = false for a plain core)")]
    if der is None:
        return [Check("FAIL", "core tls", "the core showed no certificate", "check the core's TLS setup")]
    cert = x509.load_der_x509_certificate(der)
    return [_expiry("core tls", cert.not_valid_after_utc, f"the core's certificate for {name}",
                    "ask the core's operator to renew it")]


# ------------------------------------------------------------------ disk, outbox, permissions


def _disk(config: GatewayConfig, _: float, __: str | None) -> list[Check]:
    path = config.gateway.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    free = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB at {path}"
    if usage.free < DISK_FAIL_BYTES:
        return [Check("FAIL", "disk", free, "free space: a full disk refuses sales (503) until it has room")]
    if usage.free < DISK_WARN_BYTES or usage.free < usage.total * 0.05:
        return [Check("WARN", "disk", free, "free space before the outbox cannot grow")]
    return [Check("OK", "disk", free)]


def _outbox(config: GatewayConfig, _: float, __: str | None) -> list[Check]:
    path = config.outbox_path
    if not path.exists():
        return [Check("OK", "outbox", f"{path} does not exist yet (made at the first start)")]
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [Check("FAIL", "outbox", f"{path} cannot be read: {exc}",
                      "stop the gateway and run posgw outbox salvage " + str(path))]
    result = [str(r[0]) for r in rows]
    if result != ["ok"]:
        return [Check("FAIL", "outbox", f"{path} is damaged: {'; '.join(result[:3])}",
                      f"stop the gateway and run posgw outbox salvage {path}")]
    size = path.stat().st_size
    return [Check("OK", "outbox", f"{path}: quick_check ok ({size / 2**20:.1f} MiB)")]


def _permissions(config: GatewayConfig, _: float, user: str | None) -> list[Check]:
    out: list[Check] = []
    account = check_config.account(user)
    data = config.gateway.data_dir
    loose: list[str] = []
    locked: list[str] = []
    if data.is_dir():
        entries = [data, *[p for p in data.rglob("*") if p.parent == data or p.parent.parent == data]]
        for p in entries:
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o077:
                loose.append(f"{p} {stat.S_IMODE(st.st_mode):04o}")
            if account is not None and not check_config.writable(p, account):
                locked.append(str(p))
    if locked:
        who = account.name if account else "the service user"
        out.append(Check("FAIL", "permissions", f"{who} cannot write {', '.join(locked[:3])}"
                         + (f" and {len(locked) - 3} more" if len(locked) > 3 else ""),
                         f"chown -R {who} {data} (a run by hand as another user made them)"))
    if loose:
        out.append(Check("WARN", "permissions", f"others may read the gateway's data: {', '.join(loose[:3])}",
                         f"chmod -R go= {data} (the daemon tightens its own files at start)"))
    gw = config.gateway
    if gw.tls and gw.tls_key_file and Path(gw.tls_key_file).exists():
        mode = stat.S_IMODE(Path(gw.tls_key_file).stat().st_mode)
        if mode & 0o077:
            out.append(Check("FAIL", "permissions", f"the TLS key {gw.tls_key_file} is {mode:04o}: others "
                             "can read it", f"chmod 0600 {gw.tls_key_file}"))
    source = Path(config.source)
    if source.is_file() and source.stat().st_mode & 0o004 and config.secrets():
        inline = any(_inline_secret(source, s) for s in config.secrets())
        if inline:
            out.append(Check("WARN", "permissions", f"{source} holds keys and everyone may read it",
                             f"chmod 0640 {source}, or move the keys to /etc/posgw/credentials (*_file)"))
    if not out:
        out.append(Check("OK", "permissions", f"{data} and the keys are the service user's only"))
    return out


def _inline_secret(source: Path, secret: str) -> bool:
    try:
        return secret in source.read_text(encoding="utf-8")
    except OSError:
        return False

