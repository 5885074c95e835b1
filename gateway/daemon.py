"""The daemon: wires core client, offline cache, outbox, sender, pipeline, drivers and HTTP server.

Invariants:
- every background task is created by :meth:`Daemon._spawn` (named, owned, awaited or
  cancelled in :meth:`Daemon.stop`); driver ``run`` loops are supervised: a crash is logged,
  counted (``posgw_driver_restarts_total``) and the loop restarted with exponential backoff;
- clean stop, within ``shutdown_timeout_s``: ``/healthz`` turns 503 and systemd hears
  STOPPING=1; the listener closes and in-flight requests finish (so every acknowledged event
  is in the outbox); drivers stop; the sender delivers what it can (giving up after
  ``DRAIN_STALL_S`` without an ack, so a down core does not cost the whole budget), then stops;
  the offline ledger and the calc memory writes still in flight finish; the outbox closes last;
- systemd: READY=1 only after the server listens; WATCHDOG=1 is sent by a task on the event
  loop (a blocked loop starves the watchdog, and systemd restarts us), at half WATCHDOG_USEC.
  Nothing systemd-specific happens without ``NOTIFY_SOCKET`` (Windows, tests);
- a start failure is a :class:`gateway.errors.ConfigError` naming the config key and the fix
  (a :class:`StartFailure` when a restart may cure it: the port is busy), never a bare traceback;
- HTTPS when ``gateway.tls``: one ``SSLContext`` serves every connection; :meth:`Daemon.reload_tls`
  (SIGHUP) loads the certificate files again into it after checking them in a fresh context, so
  a bad new file leaves the old certificate serving;
- the data directory and what the gateway keeps in it are the service user's only: the directory
  is made 0700, and its own entries (the outbox, offline snapshots, state, keys) that others may
  read are tightened at start (the process umask is set by ``posgw run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.breaker import CircuitBreaker
from gateway.calc_token import CalcTokens, load_key
from gateway.config import GatewayConfig
from gateway.core_client import CoreClient, CoreTarget
from gateway.driver import Driver, DriverContext, load_driver
from gateway.errors import ConfigError
from gateway.limits import Admission, CappedSite
from gateway.metrics import Metrics
from gateway.offline import OfflineCache, OfflinePolicy
from gateway.outbox import Outbox, OutboxStateStore
from gateway.pipeline import Pipeline
from gateway.sender import Sender
from gateway.server import STATE, MountedDriver, build_app

log = logging.getLogger("posgw.daemon")
RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 30.0
DRAIN_STALL_S = 1.0  # at stop, stop waiting for the core after this long without an ack
HEALTHY_RUN_S = 60.0  # a driver loop that ran this long before failing restarts from the initial backoff


class StartFailure(ConfigError):
    """A start-up failure a restart may cure (the port is still held by another program)."""

    retriable = True


def tls_context(cert_file: str, key_file: str, source: str) -> ssl.SSLContext:
    """A server context with the certificate chain and key loaded; ConfigError naming the file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_pair(context, cert_file, key_file, source)
    return context


def load_pair(context: ssl.SSLContext, cert_file: str, key_file: str, source: str) -> None:
    for key, path in (("gateway.tls_cert_file", cert_file), ("gateway.tls_key_file", key_file)):
        if not path:
            raise ConfigError(source, key, "tls = true but no file is named", "make one with `posgw cert`")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            fix = "make the files with `posgw cert`, or fix the path or the permissions"
            raise ConfigError(source, key, f"cannot read {path}: {exc.strerror}", fix) from None
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(source, "gateway.tls_cert_file",
                          f"{cert_file} with {key_file} cannot be used: {exc}",
                          "give the PEM certificate chain and its own private key (`posgw cert`)") from None


CERT_WARN_DAYS = 30


def log_certificate(cert_file: str) -> None:
    """Log when the served certificate expires: a WARNING under CERT_WARN_DAYS or once expired
    (tills refuse it then), else INFO. An unreadable certificate was refused before this."""
    import datetime as dt

    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return
    left = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    fields = {"cert_file": cert_file, "not_after": cert.not_valid_after_utc.isoformat(), "days_left": left}
    if left < CERT_WARN_DAYS:
        fields["action"] = "renew: posgw cert, then systemctl reload posgw"
        log.warning("TLS certificate expired" if left < 0 else "TLS certificate expires soon", extra=fields)
    else:
        log.info("TLS certificate", extra=fields)


OWN_ENTRIES = ("outbox", "offline", "state", "calc_token")  # what the gateway keeps in data_dir


def secure_data_dir(data_dir: Path, source: str, outbox: Path | None = None) -> int:
    """Create ``data_dir`` 0700; take group and other permissions away from the gateway's own
    entries in it (names starting with :data:`OWN_ENTRIES`, what is in its ``offline/`` and
    ``state/``) and from the ``outbox`` file and its siblings wherever it is: they hold phones,
    balances and keys. Nothing else is touched, nor a shared directory (sticky or
    world-writable, such as /tmp) named as data_dir. Returns how many entries were tightened;
    ConfigError when the directory cannot be made."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(source, "gateway.data_dir", f"cannot create {data_dir}: {exc.strerror}",
                          "create it owned by the service user (install -d -m 0700 -o posgw DIR) "
                          "or choose a writable directory") from None
    todo: list[Path] = []
    mode = data_dir.stat().st_mode
    if not mode & (stat.S_ISVTX | stat.S_IWOTH):
        todo.append(data_dir)
    for child in data_dir.iterdir():
        if child.name.startswith(OWN_ENTRIES):
            todo.append(child)
            if child.name in ("offline", "state") and child.is_dir() and not child.is_symlink():
                todo.extend(child.iterdir())
    if outbox is not None and outbox.parent != data_dir and outbox.parent.is_dir():
        todo.extend(p for p in outbox.parent.iterdir() if p.name.startswith(outbox.name))
    tightened = 0
    me = os.geteuid()
    for path in todo:
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or st.st_uid != me or not st.st_mode & 0o077:
                continue
            path.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
            tightened += 1
        except OSError as exc:
            log.warning("cannot tighten permissions", extra={"path": str(path), "error": exc.strerror})
    return tightened


def _listen_error(exc: OSError, host: str, port: int, source: str) -> ConfigError:
    """The one-line reason the server could not listen, with its fix."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(source, "gateway.listen_host", f"{host!r} does not resolve",
                           "use an IP address of this machine, 0.0.0.0 for all, or 127.0.0.1")
    if exc.errno == errno.EADDRINUSE:
        return StartFailure(source, "gateway.listen_port",
                            f"{host}:{port} is already in use by another program",
                            f"stop it (`ss -ltnp 'sport = :{port}'` shows which) or choose another port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(source, "gateway.listen_host", f"{host} is not an address of this machine",
                           "use an address shown by `ip -brief address`, 0.0.0.0 for all, or 127.0.0.1")
    if exc.errno == errno.EACCES:
        return ConfigError(source, "gateway.listen_port", f"port {port} needs privileges",
                           "use a port above 1023 (8080, 8443)")
    return StartFailure(source, "gateway.listen_host",
                        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                        "check listen_host and listen_port")


class Notifier:
    """systemd notifications through sdnotify, only when NOTIFY_SOCKET is set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self._notifier: Any = None
        self.watchdog_interval_s: float | None = None
        if env.get("NOTIFY_SOCKET"):
            try:
                import sdnotify
            except ImportError:  # not on Linux: nothing to tell
                return
            self._notifier = sdnotify.SystemdNotifier()
            if self._notifier.socket is not None:  # a full socket drops a message, never blocks the loop
                self._notifier.socket.setblocking(False)
            usec = env.get("WATCHDOG_USEC", "")
            if usec.isdigit() and int(usec) > 0:
                self.watchdog_interval_s = int(usec) / 2 / 1_000_000

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)  # non-blocking datagram; sdnotify swallows send errors


def gateway_id(token_key: bytes) -> str:
    """This gateway's name for the core's stream fence: stable across restarts (derived from the
    data directory's calc-token key, which is random per gateway and kept), revealing nothing of it."""
    return hashlib.sha256(b"posgw gateway id\0" + token_key).hexdigest()[:32]


async def import_legacy_state(path: Path, store: OutboxStateStore) -> int:
    """Move a driver's state from the JSON file older versions kept (``state/<driver>.json``)
    into the outbox, then rename the file ``<name>.imported``; returns how many keys moved.
    An unreadable file is left where it is, with an ERROR naming it."""
    data = await asyncio.to_thread(_read_legacy_state, path)
    if not data:
        return 0
    for key, value in data.items():
        await store.put(key, value)
    await asyncio.to_thread(path.replace, path.with_name(path.name + ".imported"))
    log.info("legacy driver state imported", extra={"path": str(path), "keys": len(data)})
    return len(data)


def _read_legacy_state(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("legacy driver state unreadable", extra={
            "path": str(path), "error": str(exc),
            "action": "fix or remove the file; the driver starts without it"})
        return None
    return {str(k): str(v) for k, v in data.items()}


class Daemon:
    def __init__(
        self, config: GatewayConfig, *, metrics: Metrics | None = None, notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier()
        self.port = 0
        self._drivers_stopping = asyncio.Event()  # ctx.stopping of every driver
        self._stopping = asyncio.Event()  # sender, refresh loop, watchdog
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._driver_tasks: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self.core: CoreClient | None = None
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        self.pipeline: Pipeline | None = None
        self.tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        cfg = self.config
        data_dir = cfg.gateway.data_dir
        tightened = secure_data_dir(data_dir, cfg.source, cfg.outbox_path)
        if tightened:
            log.warning("permissions tightened: others could read the gateway's data",
                        extra={"path": str(data_dir), "entries": tightened})
        if cfg.gateway.tls:
            self.tls = tls_context(cfg.gateway.tls_cert_file, cfg.gateway.tls_key_file, cfg.source)
            log_certificate(cfg.gateway.tls_cert_file)
        breaker = CircuitBreaker(cfg.core.breaker_failures, cfg.core.breaker_reset_s)
        target = CoreTarget(cfg.core.address, cfg.core.tls, cfg.core.ca_file, cfg.core.cert_file,
                            cfg.core.key_file, cfg.core.server_name)
        token_key = load_key(data_dir / "calc_token.key")
        self.core = core = CoreClient(target, metrics=self.metrics, breaker=breaker,
                                      gateway_id=gateway_id(token_key))
        await core.start()
        self.outbox = outbox = await Outbox.open(
            cfg.outbox_path, metrics=self.metrics, stuck_after_s=cfg.outbox.stuck_after_s,
        )
        cache = OfflineCache(data_dir / "offline", core, program_every_s=cfg.core.refresh_interval_s,
                             balances_every_s=cfg.offline.snapshot_refresh_s)
        cache.load()
        policy = OfflinePolicy(cache, redeem_limit_points=cfg.offline.redeem_limit_points)
        self.pipeline = pipeline = Pipeline(
            core, policy, outbox, metrics=self.metrics, calc_budget_s=cfg.gateway.calc_budget_ms / 1000,
            hold_ttl_s=cfg.gateway.hold_ttl_s, tokens=CalcTokens(token_key),
        )
        self.sender = Sender(outbox, core, metrics=self.metrics, yield_to=pipeline.activity.busy,
                             wait_for_sale_s=cfg.outbox.wait_for_sale_s)
        mounted: list[MountedDriver] = []
        for name in cfg.enabled_drivers():
            driver = load_driver(name, cfg.driver_options(name))
            state = OutboxStateStore(outbox, name)
            await import_legacy_state(data_dir / "state" / f"{name}.json", state)
            ctx = pipeline.context(name, state, self._drivers_stopping)
            mounted.append(MountedDriver(name, driver, ctx))
        app = build_app(
            outbox=outbox, metrics=self.metrics, drivers=mounted, core_state=lambda: str(breaker.state),
            admin_key=cfg.gateway.admin_api_key.get_secret_value(), max_body_bytes=cfg.gateway.max_body_bytes,
            admission=Admission(cfg.gateway.max_requests_in_flight),
            protect=(["/metrics"] if cfg.gateway.metrics_need_admin_key else [])
            + (["/", "/status"] if cfg.gateway.status_needs_admin_key else []),
        )
        self._app = app
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None,
            shutdown_timeout=max(0.5, cfg.gateway.shutdown_timeout_s * 0.4),
            keepalive_timeout=cfg.gateway.keepalive_timeout_s,
        )
        await self._runner.setup()
        refused = self.metrics.child(self.metrics.http_refused, "connections")
        site = CappedSite(self._runner, cfg.gateway.listen_host, cfg.gateway.listen_port,
                          limit=cfg.gateway.max_connections, on_refused=refused.inc, ssl_context=self.tls)
        try:
            await site.start()
        except OSError as exc:
            raise _listen_error(exc, cfg.gateway.listen_host, cfg.gateway.listen_port, cfg.source) from None
        self.port = int(self._runner.addresses[0][1]) if self._runner.addresses else 0
        self._spawn("sender", self.sender.run(self._stopping))
        self._spawn("offline-refresh", cache.refresh_loop(self._stopping))
        for m in mounted:
            task = self._spawn(f"driver-{m.name}", self._supervise(m.name, m.driver, m.ctx))
            self._driver_tasks[m.name] = task
        if self.notifier.watchdog_interval_s:
            self._spawn("watchdog", self._watchdog(self.notifier.watchdog_interval_s))
        self.notifier.notify("READY=1")
        log.info("listening", extra={"host": cfg.gateway.listen_host, "port": self.port,
                                     "scheme": "https" if self.tls else "http",
                                     "drivers": ",".join(cfg.enabled_drivers()) or "none"})

    def reload_tls(self) -> bool:
        """Load the configured certificate and key again (SIGHUP); True when the new pair serves.
        The pair is checked in a fresh context first: a bad file keeps the old one serving."""
        gw = self.config.gateway
        if self.tls is None:
            log.info("reload: TLS is off, nothing to load")
            return False
        try:
            tls_context(gw.tls_cert_file, gw.tls_key_file, self.config.source)
            load_pair(self.tls, gw.tls_cert_file, gw.tls_key_file, self.config.source)
        except ConfigError as exc:
            log.error("TLS reload failed, the previous certificate still serves",
                      extra={"problem": str(exc)})
            return False
        log.info("TLS certificate reloaded", extra={"cert_file": gw.tls_cert_file})
        log_certificate(gw.tls_cert_file)
        return True

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        return task

    async def _supervise(self, name: str, driver: Driver, ctx: DriverContext) -> None:
        backoff = RESTART_INITIAL_S
        while not ctx.stopping.is_set():
            began = time.monotonic()
            try:
                await driver.run(ctx)
                return
            except Exception:  # the supervisor: a driver bug must not stop the other drivers
                if time.monotonic() - began > HEALTHY_RUN_S:
                    backoff = RESTART_INITIAL_S
                log.exception("driver loop failed, restarting", extra={"driver": name, "backoff_s": backoff})
                self.metrics.driver_restarts.labels(driver=name).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stopping.wait(), backoff)
            backoff = min(backoff * 2, RESTART_MAX_S)

    async def _watchdog(self, interval: float) -> None:
        while not self._stopping.is_set():
            self.notifier.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - the contracted signature
        """Stop cleanly within ``timeout`` seconds (see the module docstring for the order)."""
        deadline = time.monotonic() + timeout
        left: Callable[[], float] = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        self.notifier.notify("STOPPING=1")
        log.info("stopping", extra={"timeout_s": timeout})
        if self._runner is not None:
            self._runner.app[STATE].stopping = True
        self._drivers_stopping.set()
        if self._runner is not None:  # closes the listener, waits for in-flight requests
            await _bounded(self._runner.cleanup(), left() * 0.5, "http server")
        await _finish(list(self._driver_tasks.values()), left() * 0.3, "drivers")
        if self.sender is not None:  # while its run task still streams
            emptied = await _bounded(self.sender.drain(left() * 0.5, stall_s=DRAIN_STALL_S), left() * 0.6,
                                     "sender drain")
            log.info("sender flushed", extra={"outbox_empty": bool(emptied)})
        self._stopping.set()
        await _finish([t for n, t in self._tasks.items() if not n.startswith("driver-")], left() * 0.5,
                      "background tasks")
        if self.pipeline is not None:  # offline grants are written off the event loop
            await _bounded(self.pipeline.offline.ledger.drain(), left() * 0.5, "offline ledger")
            await _bounded(self.pipeline.settle_memory(), left() * 0.5, "calc memory writes")
        if self.outbox is not None:
            await _bounded(self.outbox.close(), left(), "outbox close")
        if self.core is not None:
            await _bounded(self.core.close(), left(), "core channel close")
        log.info("stopped", extra={"seconds_left": round(left(), 3)})


async def _bounded(awaitable: Coroutine[Any, Any, Any], within_s: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, max(within_s, 0.01))
    except TimeoutError:
        log.warning("shutdown step timed out", extra={"step": what, "timeout_s": round(within_s, 3)})
    except Exception:  # shutdown goes on: the later steps (closing the outbox) matter more
        log.exception("shutdown step failed", extra={"step": what})
    return None


async def _finish(tasks: list[asyncio.Task[None]], within_s: float, what: str) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=max(within_s, 0.01))
    for task in pending:
        task.cancel()
    if pending:
        log.warning("tasks cancelled at shutdown", extra={"step": what,
                                                           "tasks": ",".join(t.get_name() for t in pending)})
        await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("task failed", extra={"task": task.get_name()}, exc_info=task.exception())
