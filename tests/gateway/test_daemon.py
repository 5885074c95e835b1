"""gateway.daemon: the real process (``posgw run``) against a stub core; supervision in-process.

The SIGTERM test runs the daemon as a subprocess with a stub gRPC core in the test's event
loop: a calculate in flight when SIGTERM arrives completes online, the stored sale reaches the
core, systemd hears READY / WATCHDOG / STOPPING on a fake NOTIFY_SOCKET, and the process exits
0 well within shutdown_timeout_s.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from gateway import daemon as daemon_mod
from gateway.config import parse_config
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.daemon import Daemon, gateway_id
from gateway.outbox import Outbox
from tests.drivers.fake_context import FakeContext
from tests.gateway.fake_core import ack_all

ROOT = Path(__file__).resolve().parents[2]
KEY = "till-key"
LINE = {"line_id": "1", "sku": "MILK", "name": "Milk", "price": 10000, "qty_milli": 1000, "amount": 10000}
CALC = {"register_id": "R1", "lines": [LINE], "customer": {"card": "777"}}
SALE = {"register_id": "R1", "receipt_number": "9", "shift": "1", "lines": [LINE]}


class StubCore(pb_grpc.LoyaltyCoreServiceServicer):
    """Calculate is slow on purpose (the request is in flight at SIGTERM); events are acked."""

    def __init__(self) -> None:
        self.calc_started = asyncio.Event()
        self.calc_delay_s = 1.5
        self.delivered: list[str] = []

    async def Calculate(self, request: pb.CalculateRequest, context: Any) -> pb.CalculateResponse:
        self.calc_started.set()
        await asyncio.sleep(self.calc_delay_s)  # the core's own latency, not a test wait
        lines = [pb.LineResult(line_id=x.line_id, discount=100, paid=x.amount - 100, accrues=True)
                 for x in request.draft.lines]
        return pb.CalculateResponse(customer_id="cus-1", lines=lines, payable=sum(x.paid for x in lines),
                              points_to_accrue=5, tier="base", balance_before=10, balance_after=15,
                              display_name="Anna K.")

    async def StreamEvents(self, request_iterator: Any,
                           context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        async for reply in ack_all(request_iterator, self.delivered):  # grpc.aio wants an async generator
            yield reply


@pytest.fixture
async def stub_core() -> AsyncIterator[tuple[StubCore, int]]:
    server = grpc.aio.server()
    core = StubCore()
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(core, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield core, port
    await server.stop(grace=None)


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    short = tempfile.mkdtemp(prefix="posgw-", dir="/tmp")  # AF_UNIX paths must stay short
    path = os.path.join(short, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    shutil.rmtree(short, ignore_errors=True)


def write_config(tmp_path: Path, core_port: int) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f"[gateway]\nlisten_port = 0\ndata_dir = '{tmp_path / 'data'}'\ncalc_budget_ms = 5000\n"
        f"shutdown_timeout_s = 10.0\n[core]\naddress = '127.0.0.1:{core_port}'\n"
        f"[drivers.native]\nenabled = true\napi_keys = ['{KEY}']\n"
    )
    return path


async def read_port(stderr: asyncio.StreamReader, seen: list[str]) -> int:
    while True:
        line = (await stderr.readline()).decode()
        if not line:
            raise AssertionError("daemon exited before listening:\n" + "".join(seen))
        seen.append(line)
        found = re.search(r"msg=listening .*port=(\d+)", line)
        if found:
            return int(found.group(1))


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_drains_in_flight_request_and_exits_0(
    tmp_path: Path, stub_core: tuple[StubCore, int], notify_socket: tuple[socket.socket, str],
) -> None:
    core, core_port = stub_core
    sock, sock_path = notify_socket
    config = write_config(tmp_path, core_port)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="200000")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "--config", str(config), cwd=ROOT, env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    messages: list[str] = []
    listener = asyncio.create_task(_listen(sock, messages))
    try:
        port = await asyncio.wait_for(read_port(proc.stderr, seen), 20)
        drain_log = asyncio.create_task(_collect(proc.stderr, seen))
        base = f"http://127.0.0.1:{port}/v1/native"
        hdrs = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(f"{base}/sales", json=SALE, headers=hdrs) as resp:
                assert resp.status == 200
                sale_key = (await resp.json())["key"]

            async def calculate() -> tuple[int, Any]:
                async with session.post(f"{base}/calculate", json=CALC, headers=hdrs) as resp:
                    return resp.status, await resp.json()

            in_flight = asyncio.create_task(calculate())
            await asyncio.wait_for(core.calc_started.wait(), 10)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            status, body = await in_flight
            rc = await asyncio.wait_for(proc.wait(), 12)
            elapsed = time.monotonic() - started
        await drain_log
    finally:
        listener.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = "".join(seen)
    assert (status, body["offline"], body["payable"]) == (200, False, 9900), log
    assert rc == 0, log
    assert elapsed < 10, log
    assert sale_key in core.delivered, log
    assert messages[0] == "READY=1" and "STOPPING=1" in messages, messages
    assert "WATCHDOG=1" in messages
    with pytest.raises(OSError):  # the listener is gone
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    outbox = await Outbox.open(tmp_path / "data" / "outbox.db")
    try:
        assert (await outbox.stats()).pending == 0  # the sender delivered before the outbox closed
    finally:
        await outbox.close()


async def _collect(stream: asyncio.StreamReader, seen: list[str]) -> None:
    while line := await stream.readline():
        seen.append(line.decode())


async def _listen(sock: socket.socket, messages: list[str]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        messages.append((await loop.sock_recv(sock, 4096)).decode().strip())


class FlakyDriver:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    def routes(self, ctx: Any) -> list[Any]:
        return []

    async def run(self, ctx: Any) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError("port vanished")


async def test_supervisor_restarts_a_failing_driver_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daemon_mod, "RESTART_INITIAL_S", 0.001)
    d = Daemon(parse_config({"gateway": {"data_dir": str(tmp_path)}}))
    driver = FlakyDriver(failures=3)
    ctx = FakeContext("flaky")
    await asyncio.wait_for(d._supervise("flaky", driver, ctx), 5)  # type: ignore[arg-type]
    assert driver.runs == 4
    assert d.metrics.driver_restarts.labels(driver="flaky")._value.get() == 3


async def test_supervisor_stops_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_mod, "RESTART_INITIAL_S", 60.0)
    d = Daemon(parse_config({"gateway": {"data_dir": str(tmp_path)}}))
    ctx = FakeContext("flaky")
    task = asyncio.create_task(d._supervise("flaky", FlakyDriver(failures=100), ctx))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # let it fail once and start its backoff wait
    await asyncio.sleep(0)
    ctx.stopping.set()
    await asyncio.wait_for(task, 2)  # the 60 s backoff is cut short by stopping


async def test_daemon_in_process_start_stop_core_down(tmp_path: Path) -> None:
    config = parse_config({
        "gateway": {"data_dir": str(tmp_path), "listen_port": 0, "calc_budget_ms": 200},
        "core": {"address": "127.0.0.1:1"},
        "drivers": {"native": {"enabled": True, "api_keys": [KEY]}},
    })
    d = Daemon(config)
    await d.start()
    try:
        base = f"http://127.0.0.1:{d.port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            hdrs = {"Authorization": f"Bearer {KEY}"}
            async with session.post(f"{base}/v1/native/calculate", json=CALC, headers=hdrs) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["offline"] is True  # core down: offline, in budget
            async with session.post(f"{base}/v1/native/sales", json=SALE, headers=hdrs) as resp:
                assert (resp.status, (await resp.json())["duplicate"]) == (200, False)
    finally:
        started = time.monotonic()
        await d.stop(timeout=3)
        assert time.monotonic() - started < 3.5
    outbox = await Outbox.open(config.outbox_path)
    try:
        assert (await outbox.stats()).pending == 1  # kept for the next start, not lost
    finally:
        await outbox.close()
    assert json.dumps(config.secrets()) == json.dumps([KEY])


async def test_the_gateway_id_the_core_fences_by_survives_a_restart(tmp_path: Path) -> None:
    config = parse_config({
        "gateway": {"data_dir": str(tmp_path), "listen_port": 0},
        "core": {"address": "127.0.0.1:1"},
        "drivers": {"native": {"enabled": True, "api_keys": [KEY]}},
    })
    ids = []
    for _ in range(2):
        d = Daemon(config)
        await d.start()
        assert d.core is not None
        ids.append(d.core.gateway_id)
        await d.stop(timeout=3)
    key = (tmp_path / "calc_token.key").read_bytes()
    assert ids == [gateway_id(key)] * 2 and len(ids[0]) == 32
    assert key.hex() not in ids[0] and gateway_id(bytes(32)) != ids[0]  # per gateway, not the key itself


async def test_daemon_imports_a_drivers_legacy_json_state_once(tmp_path: Path) -> None:
    legacy = tmp_path / "state" / "native.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps({"cursor": "42", "tx:7": "native:sale:7"}))
    config = parse_config({
        "gateway": {"data_dir": str(tmp_path), "listen_port": 0},
        "core": {"address": "127.0.0.1:1"},
        "drivers": {"native": {"enabled": True, "api_keys": [KEY]}},
    })
    for _ in range(2):  # the second start finds nothing left to import and keeps what was imported
        d = Daemon(config)
        await d.start()
        try:
            assert d.pipeline is not None and d.outbox is not None
            state = daemon_mod.OutboxStateStore(d.outbox, "native")
            ctx = d.pipeline.context("native", state, asyncio.Event())
            assert await ctx.state.get("cursor") == "42"
            assert await ctx.state.get("tx:7") == "native:sale:7"
        finally:
            await d.stop(timeout=3)
        assert not legacy.exists() and legacy.with_name("native.json.imported").exists()


async def test_unreadable_legacy_state_is_left_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    legacy = tmp_path / "poster.json"
    legacy.write_text("{not json")
    outbox = await Outbox.open(tmp_path / "o.db")
    try:
        store = daemon_mod.OutboxStateStore(outbox, "poster")
        assert await daemon_mod.import_legacy_state(legacy, store) == 0
    finally:
        await outbox.close()
    assert legacy.read_text() == "{not json"
    [record] = [r for r in caplog.records if r.getMessage() == "legacy driver state unreadable"]
    assert record.path == str(legacy) and "fix or remove" in record.action  # type: ignore[attr-defined]


def test_run_refuses_a_bad_config_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nlisten_prot = 1\n[core]\ntls = 'no'\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "gateway.listen_prot: unknown key (fix: did you mean 'listen_port'?)" in err
    assert "core.tls: expected true or false" in err


# ------------------------------------------------------------------ secure by default, readable failures


def make_cert(tls_dir: Path) -> None:
    from gateway.cli import main

    assert main(["cert", "--dir", str(tls_dir), "--ip", "127.0.0.1", "--name", "localhost"]) == 0


def served_serial(port: int, ca: Path) -> int:
    """The serial of the certificate a real TLS client is shown on 127.0.0.1:port (verified by ca)."""
    import ssl

    from cryptography import x509

    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def tls_config(tmp_path: Path, **gateway: Any) -> Any:
    tls = tmp_path / "tls"
    return parse_config({
        "gateway": {"data_dir": str(tmp_path / "data"), "listen_port": 0, "tls": True,
                    "tls_cert_file": str(tls / "server.pem"), "tls_key_file": str(tls / "server.key"),
                    **gateway},
        "core": {"address": "127.0.0.1:1"},
        "drivers": {"native": {"enabled": True, "api_keys": [KEY]}},
    }, file=str(tmp_path / "gw.toml"))


async def test_https_serves_the_certificate_and_reloads_it(tmp_path: Path) -> None:
    make_cert(tmp_path / "tls")
    d = Daemon(tls_config(tmp_path))
    await d.start()
    try:
        ca = tmp_path / "tls" / "ca.pem"
        first = await asyncio.to_thread(served_serial, d.port, ca)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            import ssl
            context = ssl.create_default_context(cafile=str(ca))
            async with session.get(f"https://127.0.0.1:{d.port}/healthz", ssl=context) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on the TLS port
                async with session.get(f"http://127.0.0.1:{d.port}/healthz") as resp:
                    await resp.read()
        make_cert(tmp_path / "tls")  # renewed: same CA, new serial
        assert d.reload_tls() is True
        second = await asyncio.to_thread(served_serial, d.port, ca)
        assert second != first
        (tmp_path / "tls" / "server.key").write_text("broken\n")  # a bad renewal keeps the old pair
        assert d.reload_tls() is False
        assert await asyncio.to_thread(served_serial, d.port, ca) == second
    finally:
        await d.stop(timeout=3)


async def test_missing_tls_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    d = Daemon(tls_config(tmp_path))
    with pytest.raises(daemon_mod.ConfigError) as exc:
        await d.start()
    await d.stop(timeout=3)
    assert exc.value.key == "gateway.tls_cert_file" and "cannot read" in exc.value.problem


def test_secure_data_dir_tightens_what_others_could_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    old = os.umask(0o022)
    try:
        (data / "offline").mkdir(parents=True)
        (data / "outbox.db").write_text("x")
        (data / "offline" / "balances.json").write_text("{}")
        (data / "notes.txt").write_text("the operator's own file")
        elsewhere.mkdir()
        (elsewhere / "box.db").write_text("x")
        (elsewhere / "box.db-wal").write_text("x")
        (elsewhere / "other").write_text("x")
    finally:
        os.umask(old)
    assert daemon_mod.secure_data_dir(data, "gw.toml", elsewhere / "box.db") == 6
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777
             for p in [data, *data.rglob("*"), *elsewhere.iterdir()]}
    assert modes == {"data": 0o700, "data/offline": 0o700, "data/outbox.db": 0o600,
                     "data/offline/balances.json": 0o600, "data/notes.txt": 0o644,  # not the gateway's
                     "elsewhere/box.db": 0o600, "elsewhere/box.db-wal": 0o600, "elsewhere/other": 0o644}
    assert daemon_mod.secure_data_dir(data, "gw.toml", elsewhere / "box.db") == 0


def test_secure_data_dir_leaves_a_shared_directory_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    (shared / "outbox.db").write_text("x")
    (shared / "outbox.db").chmod(0o644)
    assert daemon_mod.secure_data_dir(shared, "gw.toml") == 1
    assert (shared.stat().st_mode & 0o7777, (shared / "outbox.db").stat().st_mode & 0o777) == (0o1777, 0o600)


def posgw_run(config: Path, *, umask: int = 0o022) -> Any:
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.umask(umask),
    )


def wait_for(proc: Any, pattern: str, seen: list[str]) -> re.Match[str]:
    for line in proc.stderr:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no {pattern!r} before exit:\n" + "".join(seen))


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and modes")
def test_real_process_https_sighup_and_private_files_under_umask_022(tmp_path: Path) -> None:
    make_cert(tmp_path / "tls")
    tls = tmp_path / "tls"
    config = tmp_path / "gw.toml"
    config.write_text(
        f"[gateway]\nlisten_port = 0\ndata_dir = '{tmp_path / 'data'}'\nshutdown_timeout_s = 3.0\n"
        f"tls = true\ntls_cert_file = '{tls / 'server.pem'}'\ntls_key_file = '{tls / 'server.key'}'\n"
        f"[core]\naddress = '127.0.0.1:1'\n[drivers.native]\nenabled = true\napi_keys = ['{KEY}']\n")
    proc = posgw_run(config)
    seen: list[str] = []
    try:
        port = int(wait_for(proc, r"msg=listening .*port=(\d+)", seen).group(1))
        assert "scheme=https" in seen[-1]
        first = served_serial(port, tls / "ca.pem")
        make_cert(tls)
        proc.send_signal(signal.SIGHUP)
        wait_for(proc, r'msg="TLS certificate reloaded"', seen)
        assert served_serial(port, tls / "ca.pem") != first
        data = tmp_path / "data"
        entries = [data, *data.rglob("*")]
        assert len(entries) >= 3  # the directory, the outbox, the calc token key at least
        loose = {str(p): oct(p.stat().st_mode & 0o777) for p in entries
                 if p.stat().st_mode & 0o077 or (p.is_file() and p.stat().st_mode & 0o777 != 0o600)}
        assert not loose, loose  # umask 022 outside, yet nobody else may read
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(seen) + err


def start_failure(tmp_path: Path, **gateway: Any) -> tuple[int, list[str]]:
    import subprocess

    options = {"listen_port": 0, "data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 2.0, **gateway}
    config = tmp_path / "gw.toml"
    config.write_text("[gateway]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
                      + "[core]\naddress = '127.0.0.1:1'\n"
                      + f"[drivers.native]\nenabled = true\napi_keys = ['{KEY}']\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("posgw run: ")]
    assert len(said) == 1, done.stderr
    return done.returncode, [said[0].removeprefix(f"posgw run: {config}: ")]


@pytest.mark.e2e
def test_start_failures_are_one_line_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, said = start_failure(tmp_path, listen_port=port)
    assert code == 1  # a restart may cure it: not 78
    assert said[0].startswith(f"gateway.listen_port: 127.0.0.1:{port} is already in use")

    code, said = start_failure(tmp_path, listen_host="192.0.2.77")
    assert code == 78
    assert said[0].startswith("gateway.listen_host: 192.0.2.77 is not an address of this machine")

    code, said = start_failure(tmp_path, listen_host="no-such-host.invalid")
    assert code == 78 and said[0].startswith("gateway.listen_host: 'no-such-host.invalid' does not resolve")

    code, said = start_failure(tmp_path, tls=True, tls_cert_file=f"{tmp_path}/none.pem",
                               tls_key_file=f"{tmp_path}/none.key")
    assert code == 78 and said[0].startswith(f"gateway.tls_cert_file: cannot read {tmp_path}/none.pem")

    (tmp_path / "file").write_text("")  # a directory cannot be made under a file
    code, said = start_failure(tmp_path, data_dir=f"{tmp_path}/file/data")
    assert code == 78 and said[0].startswith(f"gateway.data_dir: cannot create {tmp_path}/file/data")
    assert all("(fix: " in line for line in said)


async def test_config_makes_metrics_and_status_need_the_admin_key(tmp_path: Path) -> None:
    admin = "admin-key-0123456789abcdef"
    config = parse_config({
        "gateway": {"data_dir": str(tmp_path / "data"), "listen_port": 0, "admin_api_key": admin,
                    "metrics_need_admin_key": True, "status_needs_admin_key": True},
        "core": {"address": "127.0.0.1:1"},
        "drivers": {"native": {"enabled": True, "api_keys": [KEY]}},
    })
    d = Daemon(config)
    await d.start()
    try:
        base = f"http://127.0.0.1:{d.port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for path in ("/metrics", "/", "/status", "/v1/queue"):
                async with session.get(base + path) as resp:
                    assert resp.status == 401, path
                async with session.get(base + path, headers={"Authorization": f"Bearer {admin}"}) as resp:
                    assert resp.status == 200, path
            async with session.get(base + "/healthz") as resp:
                assert resp.status == 200
            hdrs = {"Authorization": f"Bearer {KEY}"}  # the tills are not behind the admin key
            async with session.post(f"{base}/v1/native/calculate", json=CALC, headers=hdrs) as resp:
                assert resp.status == 200
    finally:
        await d.stop(timeout=3)


async def test_certificate_close_to_expiry_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.cli import main

    assert main(["cert", "--dir", str(tmp_path / "tls"), "--ip", "127.0.0.1", "--days", "10"]) == 0
    d = Daemon(tls_config(tmp_path))
    with caplog.at_level("INFO", logger="posgw.daemon"):
        await d.start()
        await d.stop(timeout=3)
    soon = [r for r in caplog.records if r.getMessage() == "TLS certificate expires soon"]
    assert len(soon) == 1 and soon[0].levelname == "WARNING"
    fields = vars(soon[0])
    assert fields["days_left"] in (9, 10) and "posgw cert" in fields["action"]
