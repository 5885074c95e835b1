"""posgw check-config: one line per problem as FILE: KEY: problem (fix: ...), exit 1; else OK, 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.driver import REGISTRY

ROOT = Path(__file__).resolve().parents[3]


def test_ok_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "posgw.example.toml")]) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_every_problem_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\ncalc_budgt_ms = 300\nlisten_port = 'x'\n[drivers.zzqq]\n")
    assert main(["check-config", str(bad)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(lines) == sorted([
        f"{bad}: gateway.calc_budgt_ms: unknown key (fix: did you mean 'calc_budget_ms'?)",
        f"{bad}: gateway.listen_port: expected an integer, got 'x' (fix: write an integer like 8080)",
        f"{bad}: drivers.zzqq: unknown driver (fix: remove it; known drivers: {', '.join(sorted(REGISTRY))})",
    ])
