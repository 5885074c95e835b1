"""gateway.fields: the vendor-payload readers, as tables (values in, typed values or BadInput out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway import fields
from gateway.errors import BadInput

MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(
    ("raw", "kop"), [("199.90", 19990), (Decimal("0.005"), 1), (12, 1200), ("-0.05", -5)]
)
def test_kopecks(raw: object, kop: int) -> None:
    assert fields.kopecks(raw, "x") == kop
    assert fields.kopecks(fields.rubles(kop), "x") == kop


@pytest.mark.parametrize("raw", [1.5, True, "abc", "NaN", "1e12", None, [1]])
def test_kopecks_refuses(raw: object) -> None:
    with pytest.raises(BadInput) as err:
        fields.kopecks(raw, "lines[0].price")
    assert err.value.field == "lines[0].price"


def test_kopecks_default_only_for_none() -> None:
    assert fields.kopecks(None, "x", default=0) == 0
    with pytest.raises(BadInput):
        fields.kopecks("", "x", default=0)


def test_text_and_shapes() -> None:
    assert fields.text(123, "id") == "123"
    assert fields.text(None, "id") == ""
    with pytest.raises(BadInput, match="is required"):
        fields.text("", "id", required=True)
    with pytest.raises(BadInput, match="longer than 3"):
        fields.text("abcd", "id", limit=3)
    assert fields.opt_obj(None, "o") == {} and fields.opt_lst(None, "l") == []
    for call in (lambda: fields.obj([], "o"), lambda: fields.lst({}, "l"), lambda: fields.text(True, "t")):
        with pytest.raises(BadInput):
            call()


@pytest.mark.parametrize(
    ("raw", "when"),
    [
        ("2026-01-01T10:05:10.000+0300", datetime(2026, 1, 1, 10, 5, 10, tzinfo=MSK)),
        ("2026-01-01T07:05:10Z", datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamp(raw: object, when: datetime | None) -> None:
    assert fields.timestamp(raw, "t") == when


@pytest.mark.parametrize("raw", ["2026-01-01T07:05:10", "yesterday", "2026-01-01T07:05:10Z" + " " * 60])
def test_timestamp_refuses(raw: str) -> None:
    with pytest.raises(BadInput):
        fields.timestamp(raw, "t", limit=64)
