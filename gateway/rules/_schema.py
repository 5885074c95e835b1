"""Validation helpers for program files: typed readers that collect every problem.

Private to ``gateway.rules.program``. Each reader takes a TOML table, a key and the key path
prefix, returns the typed value (or the default when the key is absent or invalid) and adds a
``(key path, problem, fix)`` triple to the collector on any problem, so that
``check_program`` can report all problems of a file at once rather than only the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Problem = tuple[str, str, str]  # key path, problem, fix

# Common misspellings that difflib would not catch (too short or a different word).
_ALIASES = {
    "pv": "point_value_minor",
    "point_value": "point_value_minor",
    "tz": "timezone",
    "time_zone": "timezone",
    "rate": "rate_pct",
    "cap": "cap_pct",
    "levels": "levels_pct",
    "expiry": "expiry_days",
    "welcome": "welcome_points",
}


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    return type(value).__name__


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class Collector:
    """Collects problems; the readers below never raise."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, problem: str, fix: str) -> None:
        self.problems.append((path, problem, fix))

    def unknown_keys(
        self, table: Mapping[str, Any], known: Mapping[str, object] | set[str], prefix: str
    ) -> None:
        names = sorted(known)
        for key in table:
            if key in known:
                continue
            guess = _ALIASES.get(key)
            if guess is None or guess not in known:
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                guess = close[0] if close else None
            fix = f"did you mean '{guess}'?" if guess else f"remove it; known keys here: {', '.join(names)}"
            self.add(join(prefix, key), "unknown key", fix)

    def str_(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        default: str = "",
        *,
        required: bool = False,
        choices: tuple[str, ...] = (),
    ) -> str:
        path = join(prefix, key)
        if key not in table:
            if required:
                self.add(path, "required key is missing", f'add {key} = "..."')
            return default
        value = table[key]
        if not isinstance(value, str):
            self.add(
                path, f"expected a string, got {_type_name(value)} {value!r}", f'write {key} = "{value}"'
            )
            return default
        if choices and value not in choices:
            self.add(
                path, f"{value!r} is not one of {', '.join(choices)}", f"use one of: {', '.join(choices)}"
            )
            return default
        if required and not value.strip():
            self.add(path, "must not be empty", f'give {key} a value, e.g. {key} = "seed000"')
            return default
        return value

    def int_(
        self, table: Mapping[str, Any], key: str, prefix: str, default: int = 0, *, minimum: int = 0
    ) -> int:
        path = join(prefix, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            fix = f"write a whole number (money in minor units, e.g. {key} = 250 for 2,50)"
            self.add(path, f"expected an integer, got {_type_name(value)} {value!r}", fix)
            return default
        if value < minimum:
            what = "negative" if minimum == 0 else f"below {minimum}"
            self.add(path, f"{value} is {what}", f"use a value >= {minimum}")
            return default
        return value

    def opt_int(self, table: Mapping[str, Any], key: str, prefix: str) -> int | None:
        if key not in table:
            return None
        before = len(self.problems)
        value = self.int_(table, key, prefix, 0)
        return None if len(self.problems) > before else value

    def bool_(self, table: Mapping[str, Any], key: str, prefix: str, default: bool = False) -> bool:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            self.add(
                join(prefix, key),
                f"expected true or false, got {_type_name(value)} {value!r}",
                f"write {key} = true or {key} = false (no quotes)",
            )
            return default
        return value

    def pct_value(self, value: object, path: str, *, maximum: int = 100) -> int | None:
        """A percentage (integer or decimal, e.g. 2.5) -> basis points (250)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(
                path,
                f"expected a percentage number, got {_type_name(value)} {value!r}",
                "write a number without quotes or %, e.g. 5 or 2.5",
            )
            return None
        try:
            dec = Decimal(str(value)) * 100
        except InvalidOperation:
            self.add(path, f"not a number: {value!r}", "write a number such as 5 or 2.5")
            return None
        if not dec.is_finite() or dec != dec.to_integral_value():
            self.add(
                path,
                f"{value} has more than two decimal places",
                "round to hundredths of a percent, e.g. 2.55",
            )
            return None
        bp = int(dec)
        if bp < 0:
            self.add(path, f"{value} % is negative", f"use a value between 0 and {maximum}")
            return None
        if bp > maximum * 100:
            self.add(path, f"{value} % is above {maximum} %", f"use a value between 0 and {maximum}")
            return None
        return bp

    def pct(
        self, table: Mapping[str, Any], key: str, prefix: str, default: int = 0, *, required: bool = False
    ) -> int:
        path = join(prefix, key)
        if key not in table:
            if required:
                self.add(path, "required key is missing", f"add {key} = <percent>, e.g. {key} = 5")
            return default
        bp = self.pct_value(table[key], path)
        return default if bp is None else bp

    def str_list(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        default: tuple[str, ...] = (),
        *,
        choices: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        path = join(prefix, key)
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, list):
            self.add(
                path,
                f"expected an array of strings, got {_type_name(value)} {value!r}",
                f'write {key} = ["..."]',
            )
            return default
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.add(
                    f"{path}[{i}]", f"expected a string, got {_type_name(item)} {item!r}", "quote the value"
                )
            elif choices and item not in choices:
                self.add(
                    f"{path}[{i}]",
                    f"{item!r} is not one of {', '.join(choices)}",
                    f"use one of: {', '.join(choices)}",
                )
            else:
                out.append(item)
        return tuple(out)

    def table(self, table: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any] | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, Mapping):
            self.add(
                join(prefix, key),
                f"expected a table, got {_type_name(value)} {value!r}",
                f"write {key} = {{ ... }}",
            )
            return None
        return value

    def tables(self, table: Mapping[str, Any], key: str, prefix: str) -> list[tuple[str, Mapping[str, Any]]]:
        """An array of tables -> [(path, table)], skipping (and reporting) non-tables."""
        if key not in table:
            return []
        value = table[key]
        path = join(prefix, key)
        if not isinstance(value, list):
            self.add(
                path,
                f"expected an array of tables, got {_type_name(value)} {value!r}",
                f"write {key} = [{{ ... }}, ...]",
            )
            return []
        out: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append((f"{path}[{i}]", item))
            else:
                self.add(
                    f"{path}[{i}]", f"expected a table, got {_type_name(item)} {item!r}", "write { ... }"
                )
        return out
