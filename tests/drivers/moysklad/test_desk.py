"""drivers.moysklad.desk: the driver finds the core's desk on its context only when it has the calls."""

# ruff: noqa: ASYNC109

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.moysklad.desk import desk_of


@dataclass
class Sent:
    code: str = "1234"
    status: str = "sent"
    retry_after_s: int = 60


class GoodDesk:
    async def register_customer(self, **kw: Any) -> str:
        return "1"

    async def send_code(self, phone: str, *, purpose: str, wait_ms: int, timeout: float) -> Sent:
        return Sent()


class Ctx:
    def __init__(self, desk: object) -> None:
        self.desk = desk


def test_a_desk_with_both_calls_is_found() -> None:
    desk = GoodDesk()
    assert desk_of(Ctx(desk)) is desk


def test_no_desk_or_a_partial_one_is_none() -> None:
    assert desk_of(object()) is None
    assert desk_of(Ctx(object())) is None
