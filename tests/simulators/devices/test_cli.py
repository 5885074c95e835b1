"""simulators.devices.cli (``posgw sim scanner`` / ``posgw sim display``) against a real PortWorker
on the pty the simulator links."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import pytest

from gateway.device import PortOptions, PortWorker
from simulators.devices import cli
from tests.drivers.outbox_context import until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pty pairs")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


async def test_scanner_sends_each_scan_once_the_gateway_opened_the_port(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    args = parse("scanner", "--link", str(link), "--scan", "LQ1:K7M2P9XQ4T", "--scan", "+79035550142",
                 "--suffix", "crlf", "--interval-ms", "10", "--wait-s", "5")
    run = asyncio.create_task(asyncio.to_thread(cli.run, args))
    await until(link.is_symlink)
    async with PortWorker(PortOptions(str(link), reconnect_s=(0.01,))) as worker:
        got = [await asyncio.wait_for(worker.next_frame(), 5) for _ in range(2)]
    assert got == [b"LQ1:K7M2P9XQ4T", b"+79035550142"]
    assert await run == 0


def test_scanner_exits_1_when_nobody_opens_the_port(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("scanner", "--link", str(tmp_path / "s"), "--scan", "x", "--wait-s", "0.1")
    assert cli.run(args) == 1
    assert "nothing scanned" in capsys.readouterr().err
    assert cli.run(parse("scanner", "--link", str(tmp_path / "s"))) == 2


async def test_display_prints_the_screen_as_it_changes(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "display"
    args = parse("display", "--link", str(link), "--command-set", "cd5220", "--seconds", "1.0",
                 "--wait-s", "5")
    run = asyncio.create_task(asyncio.to_thread(cli.run, args))
    await until(link.is_symlink)
    async with PortWorker(PortOptions(str(link))) as worker:
        await until(lambda: worker.present)
        await worker.write(b"\x1b@\x0c\x1bQA" + "Скидка 10.00".encode("cp866") + b"\r")
        assert await run == 0
    out = capsys.readouterr().out
    assert "|Скидка 10.00        |" in out
