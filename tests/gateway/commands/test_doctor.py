"""posgw doctor on a healthy set-up (a real daemon over HTTPS, a real gRPC core over TLS: every
check OK, exit 0) and on a broken one (each FAIL named), plus a skewed core clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import os
import pwd
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.cli import main
from gateway.commands import doctor
from gateway.config import load_config
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.daemon import Daemon
from gateway.outbox import Outbox
from gateway.receipt import Event, EventKind
from tests.gateway.receipt_fixtures import make_receipt

KEY = "till-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"


class Core(pb_grpc.LoyaltyCoreServiceServicer):
    """Answers GetProgram, and GetBalances with its clock (``skew_s`` ahead of this machine)."""

    def __init__(self, skew_s: float = 0.0) -> None:
        self.skew_s = skew_s

    def GetProgram(self, request: Any, context: Any) -> pb.GetProgramResponse:
        return pb.GetProgramResponse(program_id="shop", version="abc123", config_json="{}")

    def GetBalances(self, request: Any, context: Any) -> pb.GetBalancesResponse:
        reply = pb.GetBalancesResponse()
        reply.snapshot_at.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.skew_s))
        return reply


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tls = tmp_path_factory.mktemp("tls")
    assert main(["cert", "--dir", str(tls), "--ip", "127.0.0.1", "--name", "localhost"]) == 0
    return tls


def serve_core(tls: Path, skew_s: float = 0.0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(Core(skew_s), server)  # type: ignore[no-untyped-call]
    pair = ((tls / "server.key").read_bytes(), (tls / "server.pem").read_bytes())
    creds = grpc.ssl_server_credentials([pair])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


@pytest.fixture
def core(tls_dir: Path) -> Iterator[int]:
    server, port = serve_core(tls_dir)
    yield port
    server.stop(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, tls: Path, core_port: int, listen_port: int, **extra: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    gateway = {
        "listen_port": str(listen_port), "data_dir": f"'{data}'", "admin_api_key": f"'{ADMIN}'",
        "tls": "true",
        "tls_cert_file": f"'{tls / 'server.pem'}'", "tls_key_file": f"'{tls / 'server.key'}'",
    }
    core = {"address": f"'127.0.0.1:{core_port}'", "tls": "true", "ca_file": f"'{tls / 'ca.pem'}'"}
    for key, value in extra.items():
        section, _, name = key.partition("__")
        (gateway if section == "gateway" else core)[name] = value
    path = tmp_path / "posgw.toml"
    path.write_text(
        "[gateway]\n" + "".join(f"{k} = {v}\n" for k, v in gateway.items())
        + "[core]\n" + "".join(f"{k} = {v}\n" for k, v in core.items())
        + f"[drivers.native]\nenabled = true\napi_keys = ['{KEY}']\n")
    path.chmod(0o600)
    return path


def by_level(checks: list[doctor.Check], level: str) -> dict[str, str]:
    return {c.name: c.message for c in checks if c.level == level}


async def test_healthy_set_up_is_all_ok(tmp_path: Path, tls_dir: Path, core: int) -> None:
    path = write_config(tmp_path, tls_dir, core, free_port())
    daemon = Daemon(load_config(path))
    umask = os.umask(0o077)  # what posgw run sets for the process
    try:
        await daemon.start()
        checks = await asyncio.to_thread(doctor.diagnose, str(path), timeout=5.0)
    finally:
        await daemon.stop(timeout=3)
        os.umask(umask)
    assert [c for c in checks if c.level != "OK"] == []
    names = [c.name for c in checks]
    assert names == ["config", "driver native", "listener", "tls", "core", "clock", "core tls", "disk",
                     "outbox", "permissions"]
    ok = by_level(checks, "OK")
    assert ok["listener"].endswith(": ok") and "answered in" in ok["core"]
    assert "quick_check ok" in ok["outbox"] and "valid until" in ok["tls"]


async def test_documents_in_the_operator_queue_are_a_warn_with_their_count(
    tmp_path: Path, tls_dir: Path, core: int,
) -> None:
    """/healthz says ok (its status ignores the queue): the doctor still warns of what the core refused."""
    path = write_config(tmp_path, tls_dir, core, free_port())
    config = load_config(path)
    umask = os.umask(0o077)  # what posgw run sets for the process
    try:
        outbox = await Outbox.open(config.outbox_path)  # two sales the core refused, before the start
        try:
            for n in ("1", "2"):
                receipt = make_receipt(receipt_number=n)
                await outbox.append(Event(EventKind.SALE, receipt.sale_key(), receipt.register_id,
                                          receipt.occurred_at, receipt=receipt))
            for row in await outbox.next_batch(10):
                await outbox.mark_rejected(row.id, "UNKNOWN_CUSTOMER", "the core does not know the customer")
        finally:
            await outbox.close()
        daemon = Daemon(config)
        try:
            await daemon.start()
            checks = await asyncio.to_thread(doctor.diagnose, str(path), timeout=5.0)
        finally:
            await daemon.stop(timeout=3)
    finally:
        os.umask(umask)
    assert by_level(checks, "OK")["listener"].endswith(": ok")
    warned = by_level(checks, "WARN")
    assert warned == {"operator queue": "2 document(s) the core refused are waiting"}, warned
    queue = next(c for c in checks if c.name == "operator queue")
    assert "posgw queue list" in queue.fix
    assert [c.name for c in checks].index("operator queue") == [c.name for c in checks].index("listener") + 1


def test_healthy_exit_0_and_lines(
    tmp_path: Path, tls_dir: Path, core: int, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor, "_listener", lambda *_: [doctor.Check("OK", "listener", "stubbed")])
    path = write_config(tmp_path, tls_dir, core, free_port())
    assert main(["doctor", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("OK   ") for line in lines[:-1]), lines
    assert lines[-1] == "0 FAIL, 0 WARN: nothing stops the gateway"


class NotPosgw(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from another program")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def other_program() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotPosgw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(os.geteuid() != 0, reason="--user nobody needs root to read as root (CI runs as root)")
def test_broken_set_up_names_each_fail(
    tmp_path: Path, tls_dir: Path, other_program: int, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken_tls = tmp_path / "tls"
    broken_tls.mkdir()
    (broken_tls / "server.pem").write_text("not a certificate\n")
    (broken_tls / "server.key").write_text("not a key\n")
    (broken_tls / "server.key").chmod(0o644)
    (broken_tls / "ca.pem").write_bytes((tls_dir / "ca.pem").read_bytes())
    path = write_config(tmp_path, broken_tls, other_program, other_program)  # the core "is" a web server
    path.write_text(path.read_text().replace(KEY, "change-me-till-key"))
    (tmp_path / "data" / "outbox.db").write_bytes(b"this is not a SQLite database" * 100)
    (tmp_path / "data" / "outbox.db").chmod(0o644)
    monkeypatch.setattr(doctor, "DISK_FAIL_BYTES", 1 << 62)  # no disk is that big: the disk check fails
    code = main(["doctor", str(path), "--user", pwd.getpwnam("nobody").pw_name, "--timeout", "2"])
    out = capsys.readouterr().out
    checks = doctor.diagnose(str(path), user="nobody", timeout=2.0)
    failed = by_level(checks, "FAIL")
    assert code == 1
    assert set(failed) == {"config", "driver native", "listener", "tls", "core", "core tls", "disk", "outbox",
                           "permissions"}, out
    assert "placeholder" in failed["driver native"]
    assert "does not answer as posgw" in failed["listener"]  # TLS expected, a plain web server there
    assert "not a readable PEM certificate" in failed["tls"]
    assert "did not answer" in failed["core"] and "no TLS handshake" in failed["core tls"]
    assert "is damaged" in failed["outbox"] or "cannot be read" in failed["outbox"]
    assert "GiB free" in failed["disk"]
    fails = [c for c in checks if c.level == "FAIL"]
    assert all(c.fix for c in fails)
    permissions = [c.message for c in fails if c.name == "permissions"]
    assert any("nobody cannot write" in m for m in permissions)
    assert any("the TLS key" in m and "0644" in m for m in permissions)
    assert by_level(checks, "WARN")["clock"].startswith("not checked")
    assert out.splitlines()[-1].startswith(f"{len(fails)} FAIL, ")


def test_a_skewed_core_clock_fails(tmp_path: Path, tls_dir: Path) -> None:
    server, port = serve_core(tls_dir, skew_s=120.0)
    try:
        checks = doctor.diagnose(str(write_config(tmp_path, tls_dir, port, free_port())), timeout=5.0)
    finally:
        server.stop(None)
    clock = next(c for c in checks if c.name == "clock")
    assert clock.level == "FAIL" and clock.message.startswith("+12") and "set-ntp" in clock.fix


def test_an_unloadable_config_is_one_fail_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nlisten_port = 'x'\n")
    checks = doctor.diagnose(str(bad))
    assert [(c.level, c.name) for c in checks] == [("FAIL", "config")]
    assert "gateway.listen_port" in checks[0].message and checks[0].fix


def test_another_program_on_the_port(tmp_path: Path, tls_dir: Path, other_program: int) -> None:
    path = write_config(tmp_path, tls_dir, free_port(), other_program, gateway__tls="false")
    listener = next(c for c in doctor.diagnose(str(path), timeout=2.0) if c.name == "listener")
    assert listener.level == "FAIL" and "held by another program (HTTP 200)" in listener.message
    assert "ss -ltnp" in listener.fix


def test_each_core_replica_is_checked_on_its_own(tmp_path: Path, tls_dir: Path, core: int) -> None:
    dead = free_port()
    path = write_config(tmp_path, tls_dir, core, free_port(),
                        core__address=f"'127.0.0.1:{core}, 127.0.0.1:{dead}'")
    checks = [c for c in doctor.diagnose(str(path), timeout=3.0) if c.name == "core"]
    assert [c.level for c in checks] == ["OK", "FAIL"], checks
    assert checks[0].message.startswith(f"127.0.0.1:{core} ")
    assert checks[1].message.startswith(f"127.0.0.1:{dead} ")
