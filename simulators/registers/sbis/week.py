"""A scripted shop week for the fake SBIS cloud: sales, returns, shifts, late uploads, a replaced drive.

:func:`shop_week` is pure and seeded: it returns the registers, the script (what the cloud shows, step
by step) and what the core must end with: every sale and return key once, with its customer and total.
Times are raw seconds in the documents' frame (wall clock read as UTC), the week ending at ``end_raw``.
Per register and fiscal drive the fiscal document numbers are consecutive (shift reports included).
Late uploads: on one register a run of documents is held back and shown after later ones (a gap that
closes later). A replaced drive: on the last register the drive changes mid-week (its own numbering).
Returns take part of a sale of the same customer on the same register, a day or so later. Some
receipts carry an e-mail as the buyer's contact (no customer) or the phone typed as ``8 916 ...``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from simulators.registers.sbis.cloud import receipt, shift_doc

GOODS = [
    ("Кофе зерновой 1 кг", 64_950, 1000),
    ("Сливки 10%", 5_000, 2000),
    ("Сыр весовой", 89_900, 350),
    ("Хлеб", 4_500, 1000),
    ("Шоколад", 12_990, 3000),
    ("Чай 100 пак.", 25_900, 1000),
]
DAY = 86_400


@dataclass
class Step:
    kind: str  # "publish" | "replace"
    fn: str = ""
    docs: list[dict[str, Any]] = field(default_factory=list)
    reg_id: str = ""
    at: int = 0


@dataclass
class Expected:
    key: str
    kind: str  # sale | refund
    phone: str
    total: int
    reg_id: str


@dataclass
class Week:
    registers: list[tuple[str, str]]  # (regId, first fiscal drive)
    effective_from: int
    steps: list[Step]
    expected: list[Expected]

    def sales(self) -> list[Expected]:
        return [e for e in self.expected if e.kind == "sale"]

    def refunds(self) -> list[Expected]:
        return [e for e in self.expected if e.kind == "refund"]


class _Drive:
    def __init__(self, fn: str) -> None:
        self.fn, self.fd = fn, 0

    def next(self) -> int:
        self.fd += 1
        return self.fd


def shop_week(
    *,
    seed: int = 7,
    registers: int = 4,
    days: int = 7,
    per_day: int = 4,
    end_raw: int,
    phones: list[str],
    returns_share: float = 0.2,
    late: bool = True,
    replace: bool = True,
) -> Week:
    rng = random.Random(seed)
    start = end_raw - days * DAY
    regs = [(f"00065432100{i:05d}", f"73804407001{i:05d}") for i in range(1, registers + 1)]
    drives = {reg: _Drive(fn) for reg, fn in regs}
    steps: list[Step] = []
    expected: list[Expected] = []
    held: list[Step] = []
    sold: list[tuple[str, str, str, list[tuple[str, int, int]], int]] = []  # reg, phone, key, items, at
    for day in range(days):
        for r, (reg, _) in enumerate(regs):
            if replace and r == len(regs) - 1 and day == days // 2:
                new_fn = f"73804407009{r + 1:05d}"
                steps.append(Step("replace", reg_id=reg, fn=new_fn, at=start + day * DAY + 8 * 3600))
                drives[reg] = _Drive(new_fn)
            drive = drives[reg]
            t = start + day * DAY + 9 * 3600 + r * 60
            shift = day + 1
            docs = []
            if drive.fd == 0:  # FD 1: the registration report of the drive
                docs.append(shift_doc("fiscalReport", fn=drive.fn, fd=drive.next(), at=t - 60, shift=0))
            docs.append(shift_doc("openShift", fn=drive.fn, fd=drive.next(), at=t, shift=shift))
            for n in range(per_day):
                t += rng.randint(600, 3600)
                phone = rng.choice(phones) if rng.random() < 0.75 else ""
                items = rng.sample(GOODS, rng.randint(1, 3))
                fd = drive.next()
                doc = receipt(fn=drive.fn, fd=fd, reg_id=reg, at=t, items=items, phone=phone, shift=shift)
                if not phone and n % 2 == 0:  # an e-mail as the buyer's contact: no customer
                    doc["receipt"]["buyerPhoneOrAddress"] = "buyer@example.com"
                elif phone and n == 2:  # the phone as a cashier types it: 8 and spaces
                    doc["receipt"]["buyerPhoneOrAddress"] = (
                        f"8 {phone[2:5]} {phone[5:8]}-{phone[8:10]}-{phone[10:]}"
                    )
                key = f"sbis:{drive.fn}:{fd}"
                expected.append(Expected(key, "sale", phone, doc["receipt"]["totalSum"], reg))
                sold.append((reg, phone, key, items, t))
                docs.append(doc)
                if day > 0 and n == 1 and rng.random() < returns_share * 2:
                    back = [s for s in sold if s[0] == reg and s[4] < t - DAY // 2 and s[1]]
                    if back:
                        _, rphone, _, ritems, _ = rng.choice(back)
                        part = [ritems[0]]
                        t += 120
                        rfd = drive.next()
                        ret = receipt(
                            fn=drive.fn, fd=rfd, reg_id=reg, at=t, items=part, phone=rphone, op=2, shift=shift
                        )
                        expected.append(
                            Expected(
                                f"sbis:{drive.fn}:{rfd}", "refund", rphone, ret["receipt"]["totalSum"], reg
                            )
                        )
                        docs.append(ret)
            docs.append(shift_doc("closeShift", fn=drive.fn, fd=drive.next(), at=t + 600, shift=shift))
            if late and r == 0 and day == 2:  # the till was offline: the middle of the day comes late
                held.append(Step("publish", fn=drive.fn, docs=docs[2:4]))
                docs = docs[:2] + docs[4:]
            steps.append(Step("publish", fn=drive.fn, docs=docs))
        if held and day == 4:
            steps += held
            held = []
    steps += held
    return Week(regs, start - DAY, steps, expected)
