"""gateway.rules._schema: the typed readers never raise; each returns the value, or the default
with one (key path, problem, fix) collected; unknown keys get a guess (alias or close match)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.rules._schema import Collector, _type_name, join


def read(method: str, table: dict[str, Any], key: str = "k", *args: Any, **kw: Any) -> tuple[Any, list[Any]]:
    c = Collector()
    value = getattr(c, method)(table, key, "t[0]", *args, **kw)
    return value, c.problems


def test_join() -> None:
    assert join("", "id") == "id"
    assert join("tiers[1]", "cap_pct") == "tiers[1].cap_pct"


@pytest.mark.parametrize(("value", "name"), [
    (True, "boolean"), (1, "integer"), (1.5, "decimal number"), ("x", "string"), ([1], "array"),
    ({"a": 1}, "table"), (None, "NoneType"),
])
def test_type_names(value: object, name: str) -> None:
    assert _type_name(value) == name


# ------------------------------------------------------------------ unknown keys


@pytest.mark.parametrize(("key", "fix"), [
    ("pv", "did you mean 'point_value_minor'?"),  # alias
    ("tz", "did you mean 'timezone'?"),
    ("timezon", "did you mean 'timezone'?"),  # difflib
    ("welcom_points", "did you mean 'welcome_points'?"),
    ("zzz", "remove it; known keys here: id, point_value_minor, timezone, welcome_points"),
])
def test_unknown_keys_guess(key: str, fix: str) -> None:
    c = Collector()
    known = {"id", "timezone", "point_value_minor", "welcome_points"}
    c.unknown_keys({"id": "x", key: 1}, known, "")
    assert c.problems == [(key, "unknown key", fix)]


def test_alias_not_known_here_falls_back_to_difflib() -> None:
    c = Collector()
    c.unknown_keys({"rate": 1}, {"name", "rates"}, "tiers[0]")  # alias rate_pct is not a key here
    assert c.problems == [("tiers[0].rate", "unknown key", "did you mean 'rates'?")]


def test_known_keys_pass() -> None:
    c = Collector()
    c.unknown_keys({"a": 1, "b": 2}, {"a": None, "b": None}, "x")
    assert c.problems == []


# ------------------------------------------------------------------ scalars


@pytest.mark.parametrize(("table", "kw", "value", "problems"), [
    ({"k": "v"}, {}, "v", []),
    ({}, {"default": "d"}, "d", []),
    ({}, {"required": True}, "", [("t[0].k", "required key is missing", 'add k = "..."')]),
    ({"k": 5}, {"default": "d"}, "d", [("t[0].k", "expected a string, got integer 5", 'write k = "5"')]),
    ({"k": "c"}, {"choices": ("a", "b")}, "", [("t[0].k", "'c' is not one of a, b", "use one of: a, b")]),
    ({"k": "b"}, {"choices": ("a", "b")}, "b", []),
    ({"k": "  "}, {"required": True}, "",
     [("t[0].k", "must not be empty", 'give k a value, e.g. k = "seed000"')]),
    ({"k": ""}, {}, "", []),  # empty is fine when not required
])
def test_str(table: dict[str, Any], kw: dict[str, Any], value: str, problems: list[Any]) -> None:
    assert read("str_", table, **kw) == (value, problems)


INT_FIX = "write a whole number (money in minor units, e.g. k = 250 for 2,50)"


@pytest.mark.parametrize(("table", "kw", "value", "problems"), [
    ({"k": 7}, {}, 7, []),
    ({"k": 0}, {}, 0, []),
    ({}, {"default": 100}, 100, []),
    ({"k": -1}, {"default": 3}, 3, [("t[0].k", "-1 is negative", "use a value >= 0")]),
    ({"k": 0}, {"default": 100, "minimum": 1}, 100, [("t[0].k", "0 is below 1", "use a value >= 1")]),
    ({"k": True}, {}, 0, [("t[0].k", "expected an integer, got boolean True", INT_FIX)]),
    ({"k": 2.5}, {}, 0, [("t[0].k", "expected an integer, got decimal number 2.5", INT_FIX)]),
    ({"k": "5"}, {}, 0, [("t[0].k", "expected an integer, got string '5'", INT_FIX)]),
])
def test_int(table: dict[str, Any], kw: dict[str, Any], value: int, problems: list[Any]) -> None:
    assert read("int_", table, **kw) == (value, problems)


def test_opt_int() -> None:
    assert read("opt_int", {}) == (None, [])
    assert read("opt_int", {"k": 0}) == (0, [])
    value, problems = read("opt_int", {"k": -5})
    assert value is None and [p[0] for p in problems] == ["t[0].k"]
    value, problems = read("opt_int", {"k": "x"})
    assert value is None and len(problems) == 1


def test_opt_int_with_earlier_problems_still_reads() -> None:
    c = Collector()
    c.add("x", "earlier", "fix")
    assert c.opt_int({"k": 3}, "k", "") == 3


@pytest.mark.parametrize(("table", "value", "problems"), [
    ({"k": True}, True, []),
    ({"k": False}, False, []),
    ({}, False, []),
    ({"k": "true"}, False, [("t[0].k", "expected true or false, got string 'true'",
                             "write k = true or k = false (no quotes)")]),
    ({"k": 1}, False, [("t[0].k", "expected true or false, got integer 1",
                        "write k = true or k = false (no quotes)")]),
])
def test_bool(table: dict[str, Any], value: bool, problems: list[Any]) -> None:
    assert read("bool_", table) == (value, problems)


# ------------------------------------------------------------------ percentages


@pytest.mark.parametrize(("value", "bp"), [
    (0, 0), (5, 500), (2.5, 250), (12.34, 1234), (100, 10000), (0.01, 1), (99.99, 9999), (100.0, 10000),
])
def test_pct_value_to_basis_points(value: float, bp: int) -> None:
    c = Collector()
    assert c.pct_value(value, "p") == bp
    assert c.problems == []


@pytest.mark.parametrize(("value", "problem", "fix"), [
    (2.555, "2.555 has more than two decimal places", "round to hundredths of a percent, e.g. 2.55"),
    (-1, "-1 % is negative", "use a value between 0 and 100"),
    (100.01, "100.01 % is above 100 %", "use a value between 0 and 100"),
    ("5", "expected a percentage number, got string '5'",
     "write a number without quotes or %, e.g. 5 or 2.5"),
    (True, "expected a percentage number, got boolean True",
     "write a number without quotes or %, e.g. 5 or 2.5"),
])
def test_pct_value_problems(value: object, problem: str, fix: str) -> None:
    c = Collector()
    assert c.pct_value(value, "p") is None
    assert c.problems == [("p", problem, fix)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_pct_value_refuses_nan_and_infinity(value: float) -> None:
    """TOML allows nan and inf: refused with one problem (its wording, "has more than two decimal
    places", is not pinned here: it does not describe the value)."""
    c = Collector()
    assert c.pct_value(value, "p") is None
    assert [p[0] for p in c.problems] == ["p"]


def test_pct_value_maximum() -> None:
    c = Collector()
    assert c.pct_value(150, "p", maximum=200) == 15000
    assert c.pct_value(201, "p", maximum=200) is None
    assert c.problems == [("p", "201 % is above 200 %", "use a value between 0 and 200")]


def test_pct() -> None:
    assert read("pct", {"k": 2.5}) == (250, [])
    assert read("pct", {}, default=7) == (7, [])
    assert read("pct", {"k": -3}, default=7) == (
        7, [("t[0].k", "-3 % is negative", "use a value between 0 and 100")])
    assert read("pct", {}, required=True) == (
        0, [("t[0].k", "required key is missing", "add k = <percent>, e.g. k = 5")])


# ------------------------------------------------------------------ lists and tables


def test_str_list() -> None:
    assert read("str_list", {"k": ["a", "b"]}) == (("a", "b"), [])
    assert read("str_list", {}, default=("d",)) == (("d",), [])
    assert read("str_list", {"k": []}, default=("d",)) == ((), [])
    assert read("str_list", {"k": "a"}, default=("d",)) == (
        ("d",), [("t[0].k", "expected an array of strings, got string 'a'", 'write k = ["..."]')])
    value, problems = read("str_list", {"k": ["a", 3, "zz", "b"]}, choices=("a", "b"))
    assert value == ("a", "b")  # the good items are kept
    assert problems == [("t[0].k[1]", "expected a string, got integer 3", "quote the value"),
                        ("t[0].k[2]", "'zz' is not one of a, b", "use one of: a, b")]


def test_table() -> None:
    assert read("table", {"k": {"a": 1}}) == ({"a": 1}, [])
    assert read("table", {}) == (None, [])
    assert read("table", {"k": [1]}) == (
        None, [("t[0].k", "expected a table, got array [1]", "write k = { ... }")])


def test_tables() -> None:
    assert read("tables", {}) == ([], [])
    assert read("tables", {"k": [{"a": 1}, 5, {"b": 2}]}) == (
        [("t[0].k[0]", {"a": 1}), ("t[0].k[2]", {"b": 2})],
        [("t[0].k[1]", "expected a table, got integer 5", "write { ... }")])
    assert read("tables", {"k": {"a": 1}}) == (
        [], [("t[0].k", "expected an array of tables, got table {'a': 1}", "write k = [{ ... }, ...]")])


def test_problems_accumulate_in_order() -> None:
    c = Collector()
    table = {"a": "x", "b": -1, "c": 1}
    c.int_(table, "a", "")
    c.int_(table, "b", "")
    c.bool_(table, "c", "")
    assert [p[0] for p in c.problems] == ["a", "b", "c"]
