"""What every vendor till simulator shares: money text, ids, consistency (pure, no I/O).

Owns:
- :func:`rubles` / :func:`kopecks` / :func:`qty_text`: the vendors' decimal strings from and
  to integer kopecks and thousandths (``Decimal``, half-up; never float);
- :func:`rng_uuid`: uuid4-shaped ids from a seeded ``random.Random`` (reproducible runs);
- :func:`receipt_problems`: the check every till applies to a receipt after applying a
  loyalty answer (no negative line, lines add up to the total).

The HTTP side is :mod:`simulators.registers.http`, the run of N tills
:mod:`simulators.registers.runner`; the report types
(:class:`~simulators.registers.native.report.Recorder`, ``Ack``, ``SimReport``) are the native
simulator's, reused as they are. Never imports ``drivers``.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = [
    "Num",
    "dumps",
    "kopecks",
    "line_sum",
    "milli",
    "qty_text",
    "receipt_problems",
    "rng_uuid",
    "rubles",
]


def rubles(kop: int) -> str:
    """Integer kopecks -> ``"199.90"`` (what the devices send)."""
    sign = "-" if kop < 0 else ""
    whole, cents = divmod(abs(kop), 100)
    return f"{sign}{whole}.{cents:02d}"


def kopecks(value: object) -> int:
    """A ruble string or JSON number (int or Decimal; float refused) -> kopecks, half-up."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"not a money value: {value!r}")
    dec = Decimal(value) * 100
    return int(dec.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def milli(value: object) -> int:
    """A quantity string -> thousandths, half-up."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"not a quantity: {value!r}")
    return int((Decimal(value) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def qty_text(qty_milli: int, *, weighted: bool) -> str:
    """Thousandths -> ``"2"`` for piece goods, ``"0.245"`` for weight goods."""
    if not weighted and qty_milli % 1000 == 0:
        return str(qty_milli // 1000)
    whole, frac = divmod(qty_milli, 1000)
    return f"{whole}.{frac:03d}"


def line_sum(price: int, qty_milli: int) -> int:
    """Unit price x quantity, half-up to the kopeck."""
    return (price * qty_milli + 500) // 1000


class Num(str):
    """A decimal written into JSON as a bare number (``199.9``), not a string: see :func:`dumps`."""


_NUM = "\u0000num:"


def dumps(body: Any) -> bytes:
    """JSON with :class:`Num` values as numbers (the Evotor cloud writes money as numbers) and
    ``Decimal`` too; everything else as ``json.dumps`` does. Never goes through float."""

    def mark(value: Any) -> Any:
        if isinstance(value, Num | Decimal):
            return _NUM + str(value)
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body), ensure_ascii=False, separators=(",", ":"))
    return re.sub(r'"\\u0000num:(-?[0-9.]+)"', r"\1", text).encode()


def rng_uuid(rng: random.Random) -> str:
    """A uuid4-shaped id from ``rng`` (reproducible with a seed)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def receipt_problems(lines: Sequence[tuple[str, int]], total: int) -> list[str]:
    """Every inconsistency of a receipt after loyalty: negative lines, lines not adding up."""
    out = [f"line {name}: negative sum {amount}" for name, amount in lines if amount < 0]
    if sum(amount for _, amount in lines) != total:
        out.append(f"lines add up to {sum(a for _, a in lines)}, the receipt total is {total}")
    return out


PENDING_MARKS = ("обновится позже", "Будет начислено")


def printed_offline(text: object) -> bool:
    """True when a slip text says the gateway answered offline (the balance is pending or the
    accrual provisional): what a cashier reads, not anything private to the gateway."""
    return isinstance(text, str) and any(mark in text for mark in PENDING_MARKS)
