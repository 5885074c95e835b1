"""Disk faults against the real server, the native driver and a real outbox on a real filesystem.

- a full filesystem (a 1 MiB tmpfs, filled by a file): sales are refused in the vendor's shape
  (503, the till resends), calculate is still answered, /healthz says not writable; the log
  gets one ERROR per state change, not one per refused sale; when space returns the next
  resend is stored, and every sale that was answered 200 is in the outbox;
- power loss, approximated (no dm-flakey / VM here): every append that was acknowledged was
  fsynced first. An LD_PRELOAD shim (compiled with the system C compiler) writes a line for each
  fsync/fdatasync of the outbox's files into the same stream the child process prints its
  acknowledgements to, so their order is the real order of the system calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from drivers.native.config import Config
from drivers.native.driver import NativeDriver
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.server import MountedDriver, build_app
from tests.drivers.fake_context import FakeContext, calc_result

ROOT = Path(__file__).resolve().parents[2]
KEY = "till-key-1"
LINE = {"line_id": "1", "sku": "MILK", "name": "Milk " * 40, "price": 10000, "qty_milli": 1000,
        "amount": 10000}
CALC = {"register_id": "R1", "lines": [LINE], "customer": {"phone": "+79001234567"}}


def sale(n: int) -> dict[str, Any]:
    return CALC | {"receipt_number": str(n), "shift": "7", "fiscal_sign": f"FS{n}", "redeemed_points": 0}


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode().strip()
        pytest.skip(f"cannot mount a tmpfs here (root with CAP_SYS_ADMIN needed): {why}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass
    return filler


async def test_a_full_filesystem_refuses_sales_in_the_vendors_shape_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        metrics = Metrics()
        outbox = await Outbox.open(mnt / "outbox.db", metrics=metrics)
        ctx = FakeContext("native", outbox)
        ctx.calc = lambda r: calc_result(r, {"1": 1000})
        driver = NativeDriver(Config.model_validate({"api_keys": [KEY]}))
        app = build_app(outbox=outbox, metrics=metrics, drivers=[MountedDriver("native", driver, ctx)],
                        core_state=lambda: "closed")
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        acked: list[int] = []
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:

                async def post(path: str, body: Any) -> tuple[int, Any]:
                    url = f"{base}/v1/native/{path}"
                    async with s.post(url, data=json.dumps(body), headers=headers) as r:
                        return r.status, await r.json(content_type=None)

                filler = fill(mnt)
                refused = 0
                with caplog.at_level(logging.ERROR):
                    for n in range(200):  # the till keeps selling (and resending) on a full disk
                        status, body = await post("sales", sale(n))
                        if status == 200:
                            acked.append(n)
                        else:
                            assert status == 503 and body["error"]["code"] == "STORAGE_UNAVAILABLE", body
                            refused += 1
                        assert (await post("calculate", CALC))[0] == 200  # calculate is still answered
                    assert refused > 100, (refused, acked)
                    async with s.get(f"{base}/healthz") as r:
                        health = await r.json()
                        health2 = await (await s.get(f"{base}/healthz")).json()
                    # not writable; on a full tmpfs even a fresh reader fails (disk I/O error on -shm)
                    assert r.status == 503 and {"outbox not writable", "outbox unreadable"} & set(
                        health["problems"])
                    assert health2["status"] == "not_serving"
                    filler.unlink()  # space returns
                    status, _ = await post("sales", sale(1000))
                    assert status == 200
                    acked.append(1000)
                errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
                expected = ["outbox not writable: sales are refused (the tills are asked to resend)",
                            "outbox writable again"]  # not one per refused sale, nor per /healthz
                assert [e for e in errors if e.startswith("outbox ") and "stats" not in e] == expected, errors
                assert errors.count("outbox stats failed") <= 1, errors
                async with s.get(f"{base}/healthz") as r:
                    assert r.status == 200
        finally:
            await runner.cleanup()
            await outbox.close()
        keys = {r.key for r in await _rows(mnt / "outbox.db")}
        assert {f"native:R1:7:{n}:FS{n}" for n in acked} <= keys  # every 200 is stored


async def _rows(path: Path) -> list[Any]:
    ob = await Outbox.open(path, create=False, recover=False)
    try:
        return await ob.next_batch(10_000)
    finally:
        await ob.close()


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void note(const char *what, int fd) {
    char link[64], path[512], line[700];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = 0;
    if (!strstr(path, "outbox.db")) return;
    int len = snprintf(line, sizeof line, "%s %s\n", what, path);
    write(1, line, len);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fsync");
    int rc = real(fd);
    if (rc == 0) note("FSYNC", fd);
    return rc;
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
    int rc = real(fd);
    if (rc == 0) note("FSYNC", fd);
    return rc;
}
"""

CHILD = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from gateway.outbox import Outbox
from tests.gateway.outbox_fixtures import sale

async def main():
    ob = await Outbox.open({path!r})
    for i in range(25):
        os.write(1, b"APPEND %d\\n" % i)
        await ob.append(sale("R1", i))
        os.write(1, b"ACK %d\\n" % i)
    await ob.close()

asyncio.run(main())
"""


def test_every_acknowledged_append_was_fsynced_first(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or sys.platform != "linux":
        pytest.skip("needs Linux and a C compiler for the LD_PRELOAD fsync shim")
    (tmp_path / "shim.c").write_text(SHIM)
    lib = tmp_path / "shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(tmp_path / "shim.c"), "-ldl"],
                   check=True)
    child = textwrap.dedent(CHILD).format(root=str(ROOT), path=str(tmp_path / "outbox.db"))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120, check=True,
                          env={**os.environ, "LD_PRELOAD": str(lib)})
    lines = done.stdout.decode().splitlines()
    acks = [i for i, ln in enumerate(lines) if ln.startswith("ACK ")]
    assert len(acks) == 25
    for i in acks:  # between "APPEND n" and "ACK n": an fsync of the write-ahead log
        start = lines.index(f"APPEND {lines[i].split()[1]}")
        synced = [ln for ln in lines[start:i] if ln.startswith("FSYNC ") and ln.endswith("outbox.db-wal")]
        assert synced, lines[start:i + 1]
