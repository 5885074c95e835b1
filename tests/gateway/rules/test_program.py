"""Program files: the five seeds load, bad files name the key and the fix, JSON round-trips."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.rules.program import (
    Program,
    ProgramError,
    Referral,
    Tier,
    check_program,
    load_program,
    program_from_json,
    program_from_mapping,
    program_to_json,
    program_version,
)

from .conftest import PROGRAMS

BASE = 'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 0 }]\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "program.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", [f"seed00{i}" for i in range(5)])
def test_every_program_file_loads_and_is_clean(name: str) -> None:
    path = PROGRAMS / f"{name}.toml"
    assert check_program(path) == []
    assert load_program(path).id == name


def test_seed_values_in_units(seeds: dict[str, Program]) -> None:
    s0, s2, s3, s4 = seeds["seed000"], seeds["seed002"], seeds["seed003"], seeds["seed004"]
    assert s0.tiers[0] == Tier("Уровень 1", 200, 500, 0, None, None)
    assert s0.referral == Referral((300, 100, 100, 100, 100), 200)
    assert s0.goods_for_points and s0.welcome_points == 100 and s0.expiry_days == 0
    assert s0.extra["staff_report"] is True
    assert [t.cap_bp for t in s2.tiers] == [1000, 1500, 2000, 2500, 3000]
    assert s2.expiry_days == 365 and s2.referral == Referral((500, 100, 100), 0)
    g0 = s2.grants[0]
    assert (g0.kind, g0.points, g0.valid_days, g0.cap_bp) == ("birthday", 1000, 15, 2000)
    assert s2.grants[2].platform == "2GIS"
    assert s3.currency == "GEL" and s3.timezone == "Asia/Tbilisi" and str(s3.tz) == "Asia/Tbilisi"
    assert s3.tier("Шеф") == Tier("Шеф", 400, 2000, None, 15, None)
    assert s3.grants[0].mode == "campaign"
    assert s4.identify == ("phone",) and s4.sms_price == 250 and s4.extra_receipt_price == 25
    assert s4.included_receipts_per_month == 2500
    assert s4.extra["self_registration"] == ("site", "social", "qr_sticker")
    assert seeds["seed001"].extra["offline_stores"] == 8


def test_defaults(seeds: dict[str, Program]) -> None:
    p = seeds["seed001"]
    assert (p.currency, p.pv, p.timezone, p.policy) == ("RUB", 100, "Europe/Moscow", "cashback")
    assert p.expiry_days == 0 and p.defer_days == 0 and not p.allow_negative_balance and not p.tier_demotion
    assert p.redeem_with == ("app_code", "phone_otp")
    assert seeds["seed000"].identify == ("app_code", "phone")
    assert p.referral is None and p.lowest_tier.name == "Базовый"


def test_decimal_percentages_become_basis_points(tmp_path: Path) -> None:
    text = (
        'id = "t"\nline_floor_pct = 12.5\nreference_discount_pct = 10\n'
        'tiers = [{ name = "A", rate_pct = 2.5, cap_pct = 33.33, min_spent = 0 }]\n'
        "referral = { levels_pct = [0.5, 0.25] }\n"
    )
    p = load_program(_write(tmp_path, text))
    assert (p.tiers[0].rate_bp, p.tiers[0].cap_bp) == (250, 3333)
    assert p.referral == Referral((50, 25), 0)
    assert p.line_floor_bp == 1250 and p.reference_discount_bp == 1000


def test_optional_keys(tmp_path: Path) -> None:
    text = BASE + (
        'policy = "discount"\ndefer_days = 1\ntier_demotion = true\nhold_ttl_s = 120\n'
        'no_redeem_skus = ["tobacco"]\nno_accrue_categories = ["alcohol"]\npoint_value_minor = 50\n'
        'redeem_with = ["app_code", "phone_otp", "card"]\ncashier_award_points = 5\n'
    )
    p = load_program(_write(tmp_path, text))
    assert p.policy == "discount" and p.defer_days == 1 and p.tier_demotion and p.hold_ttl_s == 120
    assert p.no_redeem_skus == frozenset({"tobacco"}) and p.no_accrue_categories == frozenset({"alcohol"})
    assert p.pv == 50 and "card" in p.redeem_with and p.cashier_award_points == 5


BAD = [
    # (file text, key path, words in the problem, words in the fix)
    (BASE + "expiry_dayz = 3\n", "expiry_dayz", "unknown key", "did you mean 'expiry_days'?"),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 0 },\n'
        '  { name = "B", rate_pct = 3, cap_pct = 5, min_spent = 10 },\n'
        '  { name = "C", rate_pct = 4, cap_prc = 5, min_spent = 20 }]\n',
        "tiers[2].cap_prc",
        "unknown key",
        "did you mean 'cap_pct'?",
    ),
    (BASE + "pv = 100\n", "pv", "unknown key", "did you mean 'point_value_minor'?"),
    (BASE + "zzz = 1\n", "zzz", "unknown key", "known keys here"),
    ('tiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 0 }]\n', "id", "missing", "add id"),
    ('id = "t"\n', "tiers", "missing", "add tiers"),
    ('id = "t"\ntiers = []\n', "tiers", "no tiers", "at least one tier"),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, min_spent = 0 }]\n',
        "tiers[0].cap_pct",
        "missing",
        "cap_pct",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 120, min_spent = 0 }]\n',
        "tiers[0].cap_pct",
        "above 100",
        "between 0 and 100",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = -1, cap_pct = 5, min_spent = 0 }]\n',
        "tiers[0].rate_pct",
        "negative",
        "between 0 and 100",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = "5%", cap_pct = 5, min_spent = 0 }]\n',
        "tiers[0].rate_pct",
        "expected a percentage",
        "without quotes",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2.555, cap_pct = 5, min_spent = 0 }]\n',
        "tiers[0].rate_pct",
        "two decimal places",
        "hundredths",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 0 },\n'
        '  { name = "B", rate_pct = 3, cap_pct = 5, min_spent = 50 },\n'
        '  { name = "C", rate_pct = 4, cap_pct = 5, min_spent = 10 }]\n',
        "tiers[2].min_spent",
        "ascending",
        "lowest threshold to the highest",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 100 }]\n',
        "tiers[0]",
        "not reachable",
        "min_spent = 0",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5 }]\n',
        "tiers[0]",
        "no threshold",
        "min_spent",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 0 },\n'
        '  { name = "A", rate_pct = 3, cap_pct = 5, min_spent = 10 }]\n',
        "tiers[1].name",
        "duplicate",
        "own name",
    ),
    (
        'id = "t"\ntiers = [{ name = "A", rate_pct = 2, cap_pct = 5, min_spent = 10.5 }]\n',
        "tiers[0].min_spent",
        "expected an integer",
        "whole number",
    ),
    (BASE + "expiry_days = -1\n", "expiry_days", "negative", ">= 0"),
    (BASE + 'expiry_days = "365"\n', "expiry_days", "expected an integer", "whole number"),
    (BASE + "welcome_points = 1.5\n", "welcome_points", "expected an integer", "whole number"),
    (BASE + "point_value_minor = 0\n", "point_value_minor", "below 1", ">= 1"),
    (BASE + 'timezone = "Mars/Olympus"\n', "timezone", "unknown time zone", "IANA"),
    (BASE + 'currency = "rub"\n', "currency", "ISO 4217", "three capital letters"),
    (BASE + 'policy = "cashbak"\n', "policy", "not one of", "cashback, discount"),
    (BASE + 'identify = ["phone", "email"]\n', "identify[1]", "not one of", "app_code"),
    (BASE + 'identify = "phone"\n', "identify", "expected an array", '["..."]'),
    (BASE + 'allow_negative_balance = "no"\n', "allow_negative_balance", "true or false", "no quotes"),
    (
        BASE + "referral = { levels_pct = [5, 1], invite_bonus = 3 }\n",
        "referral.invite_bonus",
        "unknown key",
        "did you mean 'invite_bonus_points'?",
    ),
    (BASE + "referral = { invite_bonus_points = 3 }\n", "referral.levels_pct", "missing", "levels_pct = ["),
    (
        BASE + "referral = { levels_pct = [5, 101] }\n",
        "referral.levels_pct[1]",
        "above 100",
        "between 0 and 100",
    ),
    (BASE + 'grants = [{ kind = "birthdy", points = 1 }]\n', "grants[0].kind", "not one of", "birthday"),
    (
        BASE + 'grants = [{ kind = "birthday", point = 1 }]\n',
        "grants[0].point",
        "unknown key",
        "did you mean 'points'?",
    ),
    (BASE + "grants = [{ points = 1 }]\n", "grants[0].kind", "missing", "kind"),
    (BASE + "offline_stores = -2\n", "offline_stores", "negative", ">= 0"),
    (BASE + 'staff_report = "yes"\n', "staff_report", "true or false", "no quotes"),
    (BASE + "line_floor_pct = 150\n", "line_floor_pct", "above 100", "between 0 and 100"),
    ('id = "t"\ntiers = { name = "A" }\n', "tiers", "expected an array of tables", "tiers = ["),
    ('id = "t"\ntiers = [5]\n', "tiers[0]", "expected a table", "{ ... }"),
    ('id = "t"\ntiers = [\n', "(syntax)", "invalid TOML", "syntax"),
]


@pytest.mark.parametrize(("text", "key", "problem", "fix"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_program_names_key_problem_and_fix(
    tmp_path: Path, text: str, key: str, problem: str, fix: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProgramError) as info:
        load_program(path)
    err = info.value
    assert not isinstance(err, ConfigError)  # the rules' own error; posgw core translates it
    assert err.file == str(path)
    assert err.key == key
    assert problem in err.problem
    assert fix in err.fix
    assert key in str(err) and str(path) in str(err)
    assert any(e.key == key for e in check_program(path))


def test_check_program_reports_every_problem(tmp_path: Path) -> None:
    text = (
        'id = "t"\nexpiry_dayz = 3\ncurrency = "rub"\n'
        'tiers = [{ name = "A", rate_pct = 2, cap_pct = 120, min_spent = 0, colour = "red" }]\n'
    )
    keys = [e.key for e in check_program(_write(tmp_path, text))]
    assert sorted(keys) == sorted(["expiry_dayz", "currency", "tiers[0].cap_pct", "tiers[0].colour"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="file not found"):
        load_program(tmp_path / "absent.toml")
    assert [e.problem for e in check_program(tmp_path / "absent.toml")] == ["file not found"]


def test_program_from_mapping_names_the_source() -> None:
    with pytest.raises(ProgramError) as info:
        program_from_mapping({"id": "x"}, "core-db:program/7")
    assert info.value.file == "core-db:program/7" and info.value.key == "tiers"


def test_json_round_trip_is_exact(seeds: dict[str, Program]) -> None:
    for program in seeds.values():
        text = program_to_json(program)
        again = program_from_json(text)
        assert again == program
        assert program_to_json(again) == text
        assert program_version(again) == program_version(program)


def test_version_changes_with_any_rule(seeds: dict[str, Program], tmp_path: Path) -> None:
    versions = {program_version(p) for p in seeds.values()}
    assert len(versions) == 5 and all(len(v) == 64 for v in versions)
    text = (PROGRAMS / "seed002.toml").read_text(encoding="utf-8").replace("rate_pct = 3,", "rate_pct = 3.5,")
    assert program_version(load_program(_write(tmp_path, text))) != program_version(seeds["seed002"])


def test_json_is_canonical(seeds: dict[str, Program]) -> None:
    text = program_to_json(seeds["seed003"])
    assert " " not in text.replace("Asia/Tbilisi", "")  # no padding; names have no spaces here
    assert text.index('"allow_negative_balance"') < text.index('"currency"') < text.index('"tiers"')
    assert "Шеф" in text  # UTF-8, not escaped


def test_programs_pickle_and_copy(seeds: dict[str, Program]) -> None:
    for program in seeds.values():
        assert pickle.loads(pickle.dumps(program)) == program
        assert copy.deepcopy(program) == program
        assert dataclasses.asdict(program)["id"] == program.id
