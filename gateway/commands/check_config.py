"""``posgw check-config FILE``: refuse a configuration that cannot work, naming file, key and fix.

Output, one line per problem:

- ``FILE: KEY: problem (fix: ...)`` for what makes the config unusable (the loader's errors and the
  refusals of :func:`findings`); exit status 1;
- ``warning: FILE: KEY: problem (fix: ...)`` for what works but is probably not meant; these alone
  leave the exit status 0 and end with ``OK``.

Invariants: every check reads the config and the machine, changes nothing, and imports no gRPC
code (drivers' ``check`` hooks are called through :func:`gateway.driver.driver_check`). The same
:func:`findings` are the config part of ``posgw doctor``.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import ipaddress
import os
import socket
import ssl
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from gateway.config import ConfigErrors, GatewayConfig, load_config
from gateway.driver import driver_check, driver_info

PLACEHOLDER = "change-me"
MIN_KEY_CHARS = 16  # a key on a LAN listener: at least this many characters
KEYGEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``level`` is ``FAIL`` (cannot work) or ``WARN``."""

    level: str
    file: str
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        line = f"{self.file}: {self.key}: {self.message} (fix: {self.fix})"
        return line if self.level == "FAIL" else f"warning: {line}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="gateway config file (TOML)")
    parser.add_argument("--user", metavar="NAME", default=None,
                        help="check directories as writable by this service user (default: who runs it)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stdout)
        return 1
    found = findings(config, user=args.user)
    for problem in sorted(found, key=lambda p: p.level != "FAIL"):
        print(problem)
    if any(p.level == "FAIL" for p in found):
        return 1
    enabled = ", ".join(config.enabled_drivers()) or "none"
    print(f"OK: {args.file} (drivers enabled: {enabled})")
    return 0


def findings(config: GatewayConfig, *, user: str | None = None) -> list[Problem]:
    """Every refusal and warning for a config the loader accepted."""
    file = config.source or "<config>"
    out: list[Problem] = []

    def add(level: str, key: str, message: str, fix: str) -> None:
        out.append(Problem(level, file, key, message, fix))

    gw = config.gateway
    on_lan = not _is_loopback(gw.listen_host)
    _check_drivers(config, add, on_lan)
    _check_secrets(config, add, on_lan)
    _check_core(config, add)
    _check_listener(config, add, on_lan)
    acct = account(user)
    if acct is None:
        add("FAIL", "-", f"the service user {user!r} does not exist",
            "create it (systemd-sysusers posgw.sysusers.conf) or name another with --user")
        return out
    _check_dir(gw.data_dir, "gateway.data_dir", acct, add)
    if config.outbox.path is not None and config.outbox.path.parent != gw.data_dir:
        _check_dir(config.outbox.path.parent, "outbox.path", acct, add)
    if config.outbox_path.is_file() and not writable(config.outbox_path, acct):
        add("FAIL", "outbox.path" if config.outbox.path else "gateway.data_dir",
            f"the outbox {config.outbox_path} cannot be written by {acct.name}",
            f"chown {acct.name} {config.outbox_path} && chmod 0600 {config.outbox_path}")
    return out


# ------------------------------------------------------------------ drivers and secrets


def _check_drivers(config: GatewayConfig, add: Any, on_lan: bool) -> None:
    enabled = config.enabled_drivers()
    if not enabled:
        add("FAIL", "drivers", "no driver is enabled: no till can reach the gateway",
            "enable one, e.g. [drivers.native] enabled = true (see drivers/*/sample.toml)")
    for name in enabled:
        model = config.driver_config(name)
        secrets = dict(_secret_fields(model))
        if secrets and not any(_values(v) for v in secrets.values()):
            keys = " or ".join(f"drivers.{name}.{k}" for k in secrets)
            add("FAIL", f"drivers.{name}.{next(iter(secrets))}",
                "the driver is enabled with no key, token or secret: anyone could send it receipts",
                f"set {keys} (or the matching *_file / POSGW_DRIVERS_{name.upper()}_* variable)")
        if driver_info(name).called_by == "cloud" and not on_lan and not config.gateway.tls:
            add("WARN", f"drivers.{name}",
                "a vendor's cloud calls this driver, but the gateway listens on plain-HTTP loopback",
                "publish it over HTTPS (a reverse proxy with a public address forwarding to the "
                "gateway) or listen on a reachable address with gateway.tls = true")
        try:
            results = driver_check(name, config.driver_options(name))
        except Exception as exc:  # a hook's own bug must not hide the other findings
            add("FAIL", f"drivers.{name}", f"the driver's check failed: {exc!r}", "report this bug")
            continue
        for f in results:
            add("FAIL" if f.level == "FAIL" else "WARN", f"drivers.{name}.{f.key}" if f.key else
                f"drivers.{name}", f.message, f.fix)


def _secret_fields(model: BaseModel) -> Iterator[tuple[str, Any]]:
    for name, info in type(model).model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("secret"):
            yield name, getattr(model, name)


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [i.get_secret_value() if isinstance(i, SecretStr) else str(i) for i in items if i]


def _check_secrets(config: GatewayConfig, add: Any, on_lan: bool) -> None:
    models: list[tuple[str, BaseModel]] = [("gateway", config.gateway), ("core", config.core)]
    models += [(f"drivers.{n}", config.driver_config(n)) for n in config.enabled_drivers()]
    for where, model in models:
        for name, value in _secret_fields(model):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                text = item.get_secret_value() if isinstance(item, SecretStr) else str(item)
                key = f"{where}.{name}" + (f"[{i}]" if isinstance(value, list) else "")
                if text.lower().startswith(PLACEHOLDER):
                    add("FAIL", key, f"still the example's placeholder {text[:len(PLACEHOLDER)]}-...",
                        f"replace it with a random value, e.g. from {KEYGEN}")
                elif text and on_lan and len(text) < MIN_KEY_CHARS:
                    add("FAIL", key, f"a {len(text)}-character key on a LAN listener "
                        f"({config.gateway.listen_host}) can be guessed",
                        f"use at least {MIN_KEY_CHARS} random characters, e.g. from {KEYGEN}")
    if not config.gateway.admin_api_key.get_secret_value():
        add("WARN", "gateway.admin_api_key", "no admin key: /v1/queue and /v1/outbox answer 403 "
            "(the operator queue is handled with `posgw queue` on this machine only)",
            "set gateway.admin_api_key_file (scripts/install.sh generates one)")


# ------------------------------------------------------------------ core, TLS, listener


def _check_core(config: GatewayConfig, add: Any) -> None:
    core = config.core
    for entry in core.address.split(","):  # several replicas: host:port,host:port
        if not _host_port(entry.strip()):
            add("FAIL", "core.address", f"{entry.strip()!r} is not host:port",
                'write it as "host:port", e.g. "10.0.0.5:50051" or "[::1]:50051"; several core '
                'replicas as "host:port,host:port"')
    if core.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(core, key)
            if path and not Path(path).is_file():
                add("FAIL", f"core.{key}", f"tls = true but {path} does not exist",
                    "point it at the PEM file, or empty for the default")
        if bool(core.cert_file) != bool(core.key_file):
            add("FAIL", "core.cert_file" if not core.cert_file else "core.key_file",
                "mutual TLS needs both cert_file and key_file", "set both, or neither")


def _check_listener(config: GatewayConfig, add: Any, on_lan: bool) -> None:
    gw = config.gateway
    problem = local_address_problem(gw.listen_host)
    if problem:
        add("FAIL", "gateway.listen_host", problem,
            "use an address of this machine (see `ip -brief address`), 0.0.0.0 for all, or 127.0.0.1")
    if gw.tls:
        missing = False
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(gw, key)
            if not path:
                missing = True
                add("FAIL", f"gateway.{key}", "tls = true but no file is named",
                    "make them with `posgw cert` and name them here")
            elif not Path(path).is_file():
                missing = True
                add("FAIL", f"gateway.{key}", f"tls = true but {path} does not exist",
                    "make them with `posgw cert` or fix the path")
        if not missing:
            error = tls_load_error(gw.tls_cert_file, gw.tls_key_file)
            if error:
                add("FAIL", "gateway.tls_cert_file", f"the certificate and key cannot be used: {error}",
                    "give the PEM certificate chain and its own private key (`posgw cert` makes a pair)")
    elif on_lan:
        add("WARN", "gateway.tls", f"tills on the LAN ({gw.listen_host}) send receipts and phone numbers "
            "over plain HTTP", "set tls = true with a certificate from `posgw cert`")


def tls_load_error(cert_file: str, key_file: str) -> str:
    """'' when the pair loads into a server SSLContext; else why not."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return ""


def _host_port(address: str) -> bool:
    if address.startswith("unix:"):
        return len(address) > len("unix:")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    if host.startswith("["):
        return host.endswith("]") and _is_ip(host[1:-1])
    return ":" not in host and all(c.isalnum() or c in "-._" for c in host)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_address_problem(host: str) -> str:
    """'' when ``host`` can be bound on this machine; else what is wrong with it."""
    if host in ("", "0.0.0.0", "::"):
        return ""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"{host!r} does not resolve"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            return f"{host}: {exc.strerror}"
    return ""


# ------------------------------------------------------------------ directories


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gids: frozenset[int]
    current: bool


def account(user: str | None) -> Account | None:
    """``user`` (default: who runs this) with ids and groups; None when no such user. Without
    POSIX users (Windows) only the current user is known (its access is asked with os.access)."""
    if not hasattr(os, "geteuid"):
        return Account(user or getpass.getuser(), -1, frozenset(), current=True) if user is None else None
    import grp  # POSIX only: imported here so check-config loads everywhere
    import pwd

    try:
        entry = pwd.getpwnam(user) if user is not None else None
    except KeyError:
        return None
    if entry is None or entry.pw_uid == os.geteuid():
        name = user or getpass.getuser()
        return Account(name, os.geteuid(), frozenset(os.getgroups()) | {os.getegid()}, current=True)
    gids = {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem} | {entry.pw_gid}
    return Account(entry.pw_name, entry.pw_uid, frozenset(gids), current=False)


def writable(path: Path, account: Account) -> bool:
    """Whether ``account`` may write ``path`` (and enter it, for a directory)."""
    want = os.W_OK | (os.X_OK if path.is_dir() else 0)
    if account.current:
        return os.access(path, want)
    if account.uid == 0:
        return True
    st = path.stat()
    if st.st_uid == account.uid:
        bits = (stat.S_IWUSR, stat.S_IXUSR)
    elif st.st_gid in account.gids:
        bits = (stat.S_IWGRP, stat.S_IXGRP)
    else:
        bits = (stat.S_IWOTH, stat.S_IXOTH)
    return bool(st.st_mode & bits[0]) and (not path.is_dir() or bool(st.st_mode & bits[1]))


def _check_dir(path: Path, key: str, account: Account, add: Any) -> None:
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        add("FAIL", key, f"{path} {what}",
            f"create it: install -d -m 0700 -o {account.name} {path} (the unit's StateDirectory= "
            "makes /var/lib/posgw)")
    elif not writable(path, account):
        add("FAIL", key, f"{path} cannot be written by {account.name}",
            f"chown {account.name} {path} && chmod 0700 {path}")

