"""posgw sim: the simulator list is derived from the simulator packages; one is run by name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commands import sim

ROOT = Path(__file__).resolve().parents[3]


def test_every_register_simulator_and_faults_are_listed() -> None:
    registers = sorted(p.parent.name for p in (ROOT / "simulators" / "registers").glob("*/cli.py"))
    assert registers and list(sim.SIMULATORS)[: len(registers)] == registers
    assert sim.SIMULATORS["evotor"][0] == "simulators.registers.evotor.cli"
    assert sim.SIMULATORS["faults"][0] == "simulators.faults.cli"
    assert "core" not in sim.SIMULATORS  # posgw core has its own command


def test_help_line_is_the_first_sentence_without_prefix_and_roles(tmp_path: Path) -> None:
    cli = tmp_path / "cli.py"
    cli.write_text('"""``posgw sim demo``: run a :class:`~x.Till` against ``posgw``. More.\n\nDetails."""\n')
    assert sim.summary(cli, "demo") == "run a x.Till against posgw"
    cli.write_text("x = 1\n")
    assert sim.summary(cli, "demo") == ""


def test_discover_lists_packages_with_a_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "fakesims"
    layout = {"alpha": ("__init__.py", "cli.py"), "beta": ("__init__.py",), "gamma": ("cli.py",)}
    for name, files in layout.items():
        (base / name).mkdir(parents=True)
        for file in files:
            (base / name / file).write_text('"""Alpha tills."""\n' if file == "cli.py" else "")
    (base / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sim.discover(("fakesims",)) == {"alpha": ("fakesims.alpha.cli", "Alpha tills")}


def test_help_lists_each_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    out = capsys.readouterr().out
    for name, (_, help_text) in sim.SIMULATORS.items():
        assert f"  {name:<12} {help_text}" in out


def test_run_dispatches_to_the_chosen_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "echo_sim.py").write_text(
        "def add_arguments(parser):\n    parser.add_argument('--n', type=int)\n"
        "def run(args):\n    return args.n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sim.SIMULATORS, "echo", ("echo_sim", "echoes --n"))
    assert sim.run(argparse.Namespace(simulator="echo", sim_args=["--n", "7"])) == 7
