"""posgw demo: arguments, and how the result of the trading day is printed and turned into the
exit status (0 all delivered once, 1 a problem, 2 the stack did not start). The trading day itself
is replaced here by a canned result; tests/e2e/test_demo.py runs the real one."""

from __future__ import annotations

import json
from typing import Any

import pytest

import simulators.demo_day as demo_day
from gateway.cli import main
from gateway.commands import demo
from simulators.demo_day import DemoResult
from simulators.stack import StackError

BALANCES = [{"name": "Анна", "phone": "+79990000001", "tier": "2", "balance": 1234, "debt": 0},
            {"name": "Борис", "phone": "+79990000002", "tier": "1", "balance": 0, "debt": 50}]
FIGURES = {"elapsed_s": 3.5, "receipts_acknowledged": 10, "receipts_at_core": 10, "lost": 0, "custom": 7}


@pytest.fixture
def day(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """trading_day replaced: it tells two story lines through say() and returns ``state['result']``."""
    state: dict[str, Any] = {"result": DemoResult(story=["opened"], balances=BALANCES, figures=FIGURES)}

    async def fake_day(*, seed: int = 2, say: Any = None) -> DemoResult:
        state["seed"] = seed
        say("09:00 shop opens")
        say("09:01 first sale")
        if isinstance(state["result"], Exception):
            raise state["result"]
        result: DemoResult = state["result"]
        return result

    monkeypatch.setattr(demo_day, "trading_day", fake_day)
    return state


def test_text_report_ok(day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert day["seed"] == 2
    assert capsys.readouterr().out == (
        "posgw demo: one trading day on 127.0.0.1 (core, fault proxy, gateway, tills)\n\n"
        "  09:00 shop opens\n"
        "  09:01 first sale\n"
        "\nbalances:\n"
        "  Анна         +79990000001  tier 2     1234 points\n"
        "  Борис        +79990000002  tier 1        0 points, debt 50\n"
        "\nfigures:\n"
        "  receipts_acknowledged    10\n"  # in FIGURE_ORDER, not in the dict's order
        "  receipts_at_core         10\n"
        "  lost                     0\n"
        "  elapsed_s                3.5\n"
        "\n"
        "OK: every acknowledged receipt, refund and cancel is at the core exactly once\n")


def test_text_report_with_problems_exits_1(day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    day["result"] = DemoResult(figures={"lost": 1}, problems=["sale R1/7 missing at the core", "doubled X"])
    assert main(["demo", "--seed", "9"]) == 1
    assert day["seed"] == 9
    out = capsys.readouterr().out
    assert out.endswith("\nPROBLEM: sale R1/7 missing at the core\nPROBLEM: doubled X\n")
    assert "OK:" not in out


def test_json_is_one_object_and_nothing_else(day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {**FIGURES, "story": ["opened"], "balances": BALANCES, "problems": []}
    assert "Анна" in out  # ensure_ascii=False


def test_json_with_problems_exits_1(day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    day["result"] = DemoResult(problems=["lost one"])
    assert main(["demo", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problems"] == ["lost one"]


def test_stack_that_does_not_start_exits_2(day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    day["result"] = StackError("core did not become ready: port in use")
    assert main(["demo", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "posgw demo: the stack did not start: core did not become ready: port in use\n"


def test_every_figure_name_is_printed_once_in_order() -> None:
    assert len(set(demo.FIGURE_ORDER)) == len(demo.FIGURE_ORDER)
    assert demo.FIGURE_ORDER[0] == "receipts_acknowledged" and demo.FIGURE_ORDER[-1] == "elapsed_s"


def test_seed_must_be_an_integer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--seed", "x"])
    assert exc.value.code == 2
    assert "invalid int value: 'x'" in capsys.readouterr().err
