"""posgw run: config problems exit 2 (one line each, like check-config), a start-up failure exits
1 after closing what was opened, a started daemon serves until SIGINT / SIGTERM and exits 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway import daemon as daemon_mod
from gateway.cli import main
from gateway.commands import run as run_cmd

SECRET = "adm-secret-0123456789"


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    """run() sets the switch interval, installs a log handler, freezes the collector and (through
    its event loop, uvloop's included) takes SIGINT / SIGTERM: give the test process all back."""
    root = logging.getLogger()
    handlers, level, interval = list(root.handlers), root.level, sys.getswitchinterval()
    umask = os.umask(0o022)  # run() sets 077 for the process
    os.umask(umask)
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in signals.items():
        signal.signal(sig, handler)
    gc.unfreeze()
    sys.setswitchinterval(interval)
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    root.setLevel(level)
    os.umask(umask)


def write_config(tmp_path: Path, port: int = 0) -> Path:
    path = tmp_path / "posgw.toml"
    path.write_text(
        f'[gateway]\ndata_dir = "{tmp_path / "data"}"\nlisten_port = {port}\nshutdown_timeout_s = 2.0\n'
        f'admin_api_key = "{SECRET}"\n[core]\naddress = "127.0.0.1:1"\n', encoding="utf-8")
    return path


def test_config_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_config_problems_exit_2_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nlisten_port = 'x'\ncalc_budgt_ms = 1\n", encoding="utf-8")
    assert main(["run", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert sorted(err.strip().splitlines()) == sorted([
        f"{bad}: gateway.calc_budgt_ms: unknown key (fix: did you mean 'calc_budget_ms'?)",
        f"{bad}: gateway.listen_port: expected an integer, got 'x' (fix: write an integer like 8080)",
    ])


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["run", "-c", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"{missing}: -: file not found (fix: check the path)"


def test_start_failure_exits_1_and_closes_what_was_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[float] = []
    original_stop = daemon_mod.Daemon.stop

    async def recording_stop(self: daemon_mod.Daemon, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        stopped.append(timeout)
        await original_stop(self, timeout)

    monkeypatch.setattr(daemon_mod.Daemon, "stop", recording_stop)
    with socket.socket() as busy:  # the HTTP port is taken: the daemon cannot start
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, port)
        assert main(["run", "--config", str(config)]) == 1
    assert stopped == [2.0]  # stop(shutdown_timeout_s) after the failed start
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("posgw run: ")]
    assert said == [f"posgw run: {config}: gateway.listen_port: 127.0.0.1:{port} is already in use by "
                    f"another program (fix: stop it (`ss -ltnp 'sport = :{port}'` shows which) or choose "
                    "another port)"]
    assert "Traceback" not in err and SECRET not in err


def test_an_unusable_outbox_exits_78_naming_the_path_and_moves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path)
    (tmp_path / "data" / "outbox.db").mkdir(parents=True)  # a directory where the file must be
    assert main(["run", "--config", str(config)]) == run_cmd.EX_CONFIG == 78
    err = capsys.readouterr().err
    assert f"posgw run: {tmp_path / 'data' / 'outbox.db'}" in err and "Traceback" not in err
    assert (tmp_path / "data" / "outbox.db").is_dir()  # nothing moved aside or created


def test_serves_until_sigint_then_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    class ProbedDaemon(daemon_mod.Daemon):
        """Once started, asks /healthz over real HTTP, then sends this process SIGINT."""

        async def start(self) -> None:
            await super().start()
            asyncio.get_running_loop().create_task(self.probe())

        async def probe(self) -> None:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                seen["healthz"] = resp.status
            handler = signal.getsignal(signal.SIGINT)
            seen["handler_installed"] = handler is not signal.default_int_handler
            if seen["handler_installed"]:
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C does: serve() must stop cleanly

        async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
            seen["stop_timeout"] = timeout
            await super().stop(timeout)

    monkeypatch.setattr(daemon_mod, "Daemon", ProbedDaemon)
    assert main(["run", "--config", str(write_config(tmp_path))]) == 0
    assert seen == {"healthz": 200, "handler_installed": True, "stop_timeout": 2.0}
    assert (tmp_path / "data" / "outbox.db").is_file()  # the real daemon ran in data_dir
    assert sys.getswitchinterval() == pytest.approx(0.001)
    err = capsys.readouterr().err
    assert "listening" in err and "stopped" in err  # the log handler run() installed
    assert SECRET not in err


def test_add_arguments() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    run_cmd.add_arguments(parser)
    assert parser.parse_args(["-c", "x.toml"]).config == "x.toml"
    assert parser.parse_args(["--config", "y.toml"]).config == "y.toml"
