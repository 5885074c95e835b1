"""``posgw sim fleet`` as a user runs it: a process against a real core, its report and its exit
status (0 only when every event sent was acknowledged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.core.server import serve_in_thread
from simulators.fleet import cli

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = ROOT / "config" / "programs" / "seed002.toml"


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "sim", "fleet", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


@pytest.mark.e2e
def test_two_processes_deliver_everything_and_exit_0(tmp_path: Path) -> None:
    with serve_in_thread(PROGRAM, f"sqlite:///{tmp_path / 'core.db'}") as address:
        done = sim("--core", address, "--gateways", "4", "--tills", "2", "--minutes", "0.02",
                   "--processes", "2", "--round-s", "0.1", "--customers", "5", "--seed", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["processes"] == 2 and report["gateways"] == 4
    assert report["acked"] >= 8 and report["refused_for_good"] == 0 and report["unacknowledged"] == 0


@pytest.mark.e2e
def test_sales_refused_for_good_exit_1_with_the_count(tmp_path: Path) -> None:
    with serve_in_thread(PROGRAM, f"sqlite:///{tmp_path / 'core.db'}") as address:
        done = sim("--core", address, "--gateways", "1", "--tills", "1", "--minutes", "0.005",
                   "--round-s", "0.1", "--no-register")
    assert done.returncode == 1
    assert "refused for good (operator queue)" in done.stdout and "UNKNOWN_CUSTOMER" in done.stdout
    assert "not every event sent was acknowledged" in done.stderr


@pytest.mark.parametrize("bad", [["--gateways", "0"], ["--minutes", "0"], ["--core", "a:1,"]])
def test_usage_errors_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(bad)) == 2
    assert "posgw sim fleet:" in capsys.readouterr().err


def test_gateways_are_split_over_processes_without_overlap() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    parts = cli._slices(parser.parse_args(["--gateways", "7", "--processes", "3"]), "P")
    assert [(p.first_index, p.gateways) for p in parts] == [(0, 3), (3, 2), (5, 2)]
    few = cli._slices(parser.parse_args(["--gateways", "2", "--processes", "5"]), "P")
    assert [(p.first_index, p.gateways) for p in few] == [(0, 1), (1, 1)]
