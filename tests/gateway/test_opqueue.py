"""gateway.opqueue: the operator queue's JSON view, age and text table."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.opqueue import format_age, format_table, row_view


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0s"), (0, "0s"), (45.9, "45s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86400 * 3 + 5, "3d"),
])
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


class Row:
    id, key, register_id, register_seq = 7, "native:R1:9", "R1", 3
    kind, state, attempts = "sale", "rejected", 2
    created_at, reason, last_error, note = 1_700_000_000.0, "INSUFFICIENT_POINTS", "refused", ""


def test_row_view_names_every_field_and_the_age() -> None:
    view = row_view(Row(), now=1_700_000_090.5)  # type: ignore[arg-type]
    assert view == {
        "id": 7, "key": "native:R1:9", "register_id": "R1", "register_seq": 3, "kind": "sale",
        "state": "rejected", "attempts": 2, "created_at": 1_700_000_000.0,
        "created_at_iso": "2023-11-14T22:13:20+00:00", "age_s": 90.5, "reason": "INSUFFICIENT_POINTS",
        "last_error": "refused", "note": "",
    }
    assert row_view(Row(), now=0)["age_s"] == 0.0  # type: ignore[arg-type]


def test_format_table_aligns_columns_and_shortens_keys() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 7, "register_id": "R1", "kind": "sale", "key": "k" * 60, "reason": None, "age_s": 120},
        {"id": 12, "register_id": "R22", "kind": "refund", "key": "short", "reason": "UNKNOWN_SALE",
         "age_s": 5},
    ]
    lines = format_table(rows, max_key=10).splitlines()
    assert lines == [
        "ID  REGISTER  KIND    KEY         REASON        AGE",
        "7   R1        sale    kkkkkkkkk…  -             2m",
        "12  R22       refund  short       UNKNOWN_SALE  5s",
    ]
