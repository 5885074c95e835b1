"""gateway.cli: one subcommand per module in gateway.commands, imported only when it is the one
asked for; main() returns the command's exit status; argparse errors exit 2."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from gateway import cli

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_names_a_module_with_add_arguments_and_run() -> None:
    modules = sorted(p.stem for p in (ROOT / "gateway" / "commands").glob("*.py") if p.stem != "__init__")
    assert sorted(module for module, _ in cli.COMMANDS.values()) == modules
    for name, (module_name, help_text) in cli.COMMANDS.items():
        module = importlib.import_module(f"gateway.commands.{module_name}")
        assert callable(module.add_arguments) and callable(module.run), name
        assert help_text and not help_text.endswith("."), name
    assert cli.COMMANDS["check-config"][0] == "check_config"


def test_help_lists_every_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: posgw [-h] COMMAND ...")
    for name, (_, help_text) in cli.COMMANDS.items():
        assert re.search(rf"^    {name}\s+{re.escape(help_text)}$", out, re.M), name


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["queue", "list", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_only_the_chosen_command_gets_its_arguments() -> None:
    parser = cli.build_parser(["core", "--check-program", "x"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"--check-program", "--listen"} <= set(sub.choices["core"]._option_string_actions)
    assert set(sub.choices["demo"]._option_string_actions) == {"-h", "--help"}
    assert set(sub.choices["run"]._option_string_actions) == {"-h", "--help"}
    # options before the command are skipped when looking for it
    parser = cli.build_parser(["-v", "demo"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "--seed" in sub.choices["demo"]._option_string_actions


def test_main_runs_the_command_and_returns_its_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    fake = types.ModuleType("gateway.commands.fake")
    fake.add_arguments = lambda p: p.add_argument("--code", type=int, default=0)  # type: ignore[attr-defined]
    fake.run = lambda args: print(f"ran with {args.code}") or args.code  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.commands.fake", fake)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake", "a test command"))
    assert cli.main(["fake", "--code", "3"]) == 3
    assert cli.main(["fake"]) == 0
    assert capsys.readouterr().out == "ran with 3\nran with 0\n"
    monkeypatch.setattr(sys, "argv", ["posgw", "fake", "--code", "5"])
    assert cli.main() == 5  # no argv: sys.argv[1:]


def test_check_config_does_not_import_grpc_drivers_or_simulators() -> None:
    code = (
        "import sys\n"
        "from gateway.cli import main\n"
        f"rc = main(['check-config', {str(ROOT / 'config' / 'posgw.example.toml')!r}])\n"
        "heavy = sorted(m for m in ('grpc', 'simulators', 'gateway.daemon', 'gateway.commands.core') "
        "if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "1 []"  # the example's placeholder keys are refused


def test_python_dash_m_entry_point_exits_with_the_status(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(missing)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"{missing}: -: file not found (fix: check the path)"
