"""drivers.moysklad.config: defaults, bounds, gift cards, tokens as secrets (from the environment too)."""

from __future__ import annotations

from pathlib import Path

from drivers.moysklad.config import Config
from gateway.config import EdgeOptions
from tests.drivers.config_helpers import load_section, section_problems


def load(tmp_path: Path, options: str = "", environ: dict[str, str] | None = None) -> Config:
    model = load_section(tmp_path, "moysklad", options, environ)
    assert isinstance(model, Config)
    return model


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path)
    assert c == Config() and isinstance(c, EdgeOptions)
    assert (c.tokens, c.codes_for_new_customers, c.codes_for_spending, c.gift_cards) == ([], True, True, [])
    assert (c.code_budget_ms, c.time_for_repeat_s) == (2000, 60)


def test_tokens_come_from_the_environment_and_stay_secret(tmp_path: Path) -> None:
    c = load(tmp_path, environ={"POSGW_DRIVERS_MOYSKLAD_TOKENS": "from-env"})
    assert [t.get_secret_value() for t in c.tokens] == ["from-env"]
    assert "from-env" not in repr(c)


def test_gift_cards_are_checked(tmp_path: Path) -> None:
    c = load(tmp_path, 'gift_cards = [{ name = "G1", id = "x", initial_kopecks = 500 }]\n')
    assert c.gift_cards[0].initial_kopecks == 500 and c.gift_cards[0].expires == ""
    bad = section_problems(
        tmp_path, "moysklad", 'gift_cards = [{ name = "G1", id = "x", initial_kopecks = 0 }]\n'
    )
    assert bad and "initial_kopecks" in bad[0][0]


def test_budget_bounds_and_unknown_keys(tmp_path: Path) -> None:
    assert section_problems(tmp_path, "moysklad", "code_budget_ms = 50\n")
    assert section_problems(tmp_path, "moysklad", "code_budget = 500\n")


def test_recalc_budget_default_and_bounds(tmp_path: Path) -> None:
    assert load(tmp_path).recalc_budget_ms == 1000
    assert load(tmp_path, "recalc_budget_ms = 400\n").recalc_budget_ms == 400
    assert section_problems(tmp_path, "moysklad", "recalc_budget_ms = 10\n")
    assert section_problems(tmp_path, "moysklad", "recalc_budget_ms = 60000\n")
