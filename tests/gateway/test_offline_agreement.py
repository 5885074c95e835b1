"""Offline and online agree: the offline policy never grants more than the core would.

10,000 seeded receipts per run (spread over seed programs of ``config/programs`` and variants
of them that let cards and phones redeem and allow a negative balance), each for its own
customer with a generated account (ordinary and certificate lots, some not yet available or
expired, other tills' holds, debt, tier), are evaluated twice:

- online, as the reference core does it: the receipt goes through the gateway's conversion to
  the core's draft (:func:`gateway.convert.receipt_to_draft`), the core reads its lines
  (:func:`simulators.core.convert.lines_in`) and the account as its fast path does
  (:meth:`simulators.core.fastpath.Account.state`, identification method from
  :func:`simulators.core.fastpath.key_of`) and evaluates them (:func:`simulators.core.sales._run_calc`);
- offline, by :class:`gateway.offline.OfflinePolicy` over an :class:`OfflineCache` loaded from
  the files a refresh writes: the program as the core serves it (``program_to_json``) and the
  balance snapshot as the core's GetBalances computes it (open ordinary / certificate points at
  the snapshot time, debt, live holds, tier, blocked).

Asserted for every receipt: the same accrual and the same lines (discount, paid) for the same
redemption; the offline answer's allowed redemption (``max_points``) never above the core's, and
equal to ``min(core's, offline limit left)`` when the account has no certificate points (they
are not redeemable offline by design); a redemption the offline policy applies is one the core
accepts.
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import convert
from gateway.errors import BadInput
from gateway.offline import OfflineCache, OfflinePolicy, SnapshotEntry
from gateway.offline_cache import FORMAT_VERSION
from gateway.receipt import CustomerId, IdKind, Line, Receipt
from gateway.rules.program import Program, load_program, program_to_json
from gateway.rules.types import Calculation, Lot, RuleViolation
from simulators.core import fastpath
from simulators.core.sales import _run_calc

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("seed000", "seed002", "seed003")
RECEIPTS = 10_000
NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)  # the snapshot time and the receipts' time
CATEGORIES = ("", "dairy", "tobacco", "alcohol", "gift_cards", "bakery")


def programs() -> list[tuple[str, Program]]:
    """Each seed program as it is, and a variant where cards, phones and app codes redeem and
    the balance may go negative (the paths the default redeem_with leaves unused)."""
    out: list[tuple[str, Program]] = []
    for name in PROGRAMS:
        program = load_program(ROOT / "config" / "programs" / f"{name}.toml")
        out.append((name, program))
        out.append((f"{name}+open", dataclasses.replace(
            program, redeem_with=("app_code", "card", "phone", "customer_id"), allow_negative_balance=True)))
    return out


@dataclass(frozen=True)
class Case:
    receipt: Receipt
    account: fastpath.Account
    entry: SnapshotEntry
    has_certificates: bool


def _lots(rng: random.Random, program: Program) -> tuple[list[Lot], bool]:
    lots: list[Lot] = []
    certs = False
    for i in range(rng.choice((0, 1, 1, 2, 3))):
        cert = rng.random() < 0.15
        certs = certs or cert
        start = NOW - timedelta(days=rng.randint(0, 400))
        later = rng.random() < 0.1  # not yet available at NOW
        expired = rng.random() < 0.1
        lots.append(Lot(
            f"l{i}", "certificate" if cert else "accrual", rng.choice((1, 10, 150, 2_000, 40_000)),
            start, NOW + timedelta(days=3) if later else start,
            NOW - timedelta(days=1) if expired
            else (None if rng.random() < 0.5 else NOW + timedelta(days=30)),
            cert, rng.choice((1000, 5000, 10000)) if cert else 0,
        ))
    return lots, certs


def _open(lots: list[Lot], *, certificate: bool) -> int:
    """What GetBalances reports (store.balance at the snapshot time)."""
    return sum(lot.points for lot in lots if lot.certificate is certificate and lot.available_from <= NOW
               and (lot.expires_at is None or lot.expires_at > NOW))


def cases(program: Program, count: int, seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    tiers = [t.name for t in program.tiers] or [""]
    for n in range(count):
        cid = str(1000 + n)
        lots, certs = _lots(rng, program)
        debt = rng.choice((0, 0, 0, 5, 500))
        held = rng.choice((0, 0, 10, 300, 100_000))
        kind = rng.choice((IdKind.CARD, IdKind.PHONE, IdKind.CUSTOMER_ID))
        value = {IdKind.CARD: f"77{n:08d}", IdKind.PHONE: f"+7900{n:07d}", IdKind.CUSTOMER_ID: cid}[kind]
        tier = rng.choice(tiers)
        account = fastpath.Account(
            id=int(cid), name="Анна", tier=tier, debt=debt, total_spent=rng.randint(0, 10**7),
            purchase_count=rng.randint(0, 50), effective_invited=rng.randint(0, 3),
            blocked=rng.random() < 0.02,
            held=held, lots=tuple(lots), method="", otp_ok=None,
        )
        entry = SnapshotEntry(
            cid, phone=value if kind is IdKind.PHONE else "", cards=(value,) if kind is IdKind.CARD else (),
            display_name="А***", tier=tier, ordinary_points=_open(lots, certificate=False),
            certificate_points=_open(lots, certificate=True), debt=debt, blocked=account.blocked,
            held_points=held,
        )
        lines = []
        for i in range(rng.randint(1, 6)):
            price = rng.choice((1, 99, 4_990, 12_345, 100_000, 2_500_000))
            qty = rng.choice((1000, 1000, 2000, 1500, 333))
            amount = (price * qty + 500) // 1000
            amount -= rng.choice((0, 0, 0, amount // 10))  # the till's own discount
            lines.append(Line(
                line_id=str(i + 1), sku=f"SKU{rng.randint(1, 30)}", name="x", price=price, qty_milli=qty,
                amount=amount, category=rng.choice(CATEGORIES), discountable=rng.random() < 0.85,
                accruable=rng.random() < 0.85,
                min_unit_price=rng.choice((None, None, 0, price // 2, price)),
            ))
        redeem = rng.random()
        receipt = Receipt(
            register_id=f"R{rng.randint(1, 3)}", receipt_number=str(n), shift="1", occurred_at=NOW,
            customer=CustomerId(kind, value), lines=tuple(lines),
            redeem_points=rng.choice((1, 10, 100, 1000, 50_000)) if 0.4 <= redeem < 0.8 else 0,
            redeem_max=redeem >= 0.8, driver="native",
        ).validate()
        yield Case(receipt, account, entry, certs)


def online(program: Program, case: Case, redeem_points: int | None = None) -> Calculation:
    """The reference core's Calculate for this account (fast path) with the gateway's draft."""
    draft = convert.receipt_to_draft(case.receipt)
    key = fastpath.key_of(program, draft.customer)
    assert key is not None
    account = dataclasses.replace(case.account, method=key[2])
    return _run_calc(program, account.state(program, NOW, NOW), draft, NOW, account.otp_ok,
                     redeem_points=redeem_points)


def offline_cache(tmp: Path, program: Program, entries: list[SnapshotEntry]) -> OfflineCache:
    """The cache as a refresh leaves it: the two files, then load()."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / OfflineCache.PROGRAM_FILE).write_text(json.dumps(
        {"v": FORMAT_VERSION, "config_json": program_to_json(program), "version": "v"}))
    (tmp / OfflineCache.BALANCES_FILE).write_text(json.dumps(
        {"v": FORMAT_VERSION, "fetched_at": NOW.timestamp(),
         "customers": [dataclasses.asdict(e) for e in entries]}))
    cache = OfflineCache(tmp, wall=NOW.timestamp)
    cache.load()
    return cache


def _otp_only(program: Program, case: Case) -> bool:
    """A phone without an SMS code under a program that redeems only with one."""
    customer = case.receipt.customer
    return customer is not None and customer.kind == IdKind.PHONE and not customer.otp and (
        "phone" not in program.redeem_with and "phone_otp" in program.redeem_with)


def check(program: Program, policy: OfflinePolicy, limit: int, case: Case) -> str:
    """"" when offline and online agree on this receipt, else what differs."""
    try:
        off = policy.calculate(case.receipt)
    except BadInput as exc:  # the rules refused the receipt: the core must refuse it too
        try:
            online(program, case, redeem_points=0)
        except RuleViolation:
            return ""
        return f"offline refused the receipt ({exc}), online accepts it"
    if case.entry.blocked:
        got = off.points_to_accrue or off.redeemed_points
        return "blocked customer got loyalty" if got else ""
    try:
        same = online(program, case, redeem_points=off.redeemed_points)
    except RuleViolation as exc:
        return f"offline redeemed {off.redeemed_points}, the core refuses it: {exc.code}"
    top = online(program, case, redeem_points=0)
    core_allows = top.max_points
    if _otp_only(program, case):
        core_allows = 0  # the core wants the SMS code first (OTP_REQUIRED); offline cannot check one
    if off.points_to_accrue != same.points_to_accrue:
        return f"accrual offline {off.points_to_accrue} != online {same.points_to_accrue}"
    if [(x.line_id, x.discount, x.paid) for x in off.lines] != [
            (x.line_id, x.discount, x.paid) for x in same.lines]:
        return "lines differ for the same redemption"
    if off.max_points > core_allows:
        return f"offline allows {off.max_points} > online {core_allows}"
    if not case.has_certificates and off.max_points != min(core_allows, limit):
        return f"offline allows {off.max_points}, online {core_allows}, offline limit {limit}"
    return ""


@pytest.mark.parametrize("limit", [0, 300, 10**12], ids=["no offline redemption", "limit 300", "no limit"])
def test_offline_and_online_agree(tmp_path: Path, limit: int) -> None:
    started = time.perf_counter()
    variants = programs()
    per = RECEIPTS // len(variants) // 3 + 1  # 10,000 receipts over the three limits
    problems: list[str] = []
    total = 0
    for v, (name, program) in enumerate(variants):
        batch = list(cases(program, per, seed=1000 * v + limit % 997))
        cache = offline_cache(tmp_path / f"{name}-{limit}", program, [c.entry for c in batch])
        policy = OfflinePolicy(cache, redeem_limit_points=limit, wall=NOW.timestamp,
                               ledger_path=tmp_path / f"{name}-{limit}.json")
        for i, case in enumerate(batch):
            total += 1
            why = check(program, policy, limit, case)
            if why:
                problems.append(f"{name} case {i} ({case.receipt.customer}): {why}")
    assert total * 3 >= RECEIPTS
    assert not problems, f"{len(problems)} of {total} disagree, e.g.:\n" + "\n".join(problems[:15])
    print(f"{total} receipts in {time.perf_counter() - started:.1f}s")


# ------------------------------------------------------------------ the disagreements found


def _one(program: Program, kind: IdKind, value: str, *, ordinary: int, debt: int = 0,
         ) -> tuple[Case, OfflinePolicy]:
    lot = Lot("l1", "accrual", ordinary, NOW - timedelta(days=10), NOW - timedelta(days=10), None)
    account = fastpath.Account(id=1, name="", tier=program.tiers[0].name if program.tiers else "", debt=debt,
                               total_spent=0, purchase_count=0, effective_invited=0, blocked=False, held=0,
                               lots=(lot,), method="", otp_ok=None)
    entry = SnapshotEntry("1", phone=value if kind is IdKind.PHONE else "",
                          cards=(value,) if kind is IdKind.CARD else (), tier=account.tier,
                          ordinary_points=ordinary, debt=debt)
    line = Line(line_id="1", sku="A", name="A", price=100_000, qty_milli=1000, amount=100_000)
    receipt = Receipt(register_id="R1", receipt_number="1", occurred_at=NOW, customer=CustomerId(kind, value),
                      lines=(line,), redeem_max=True, driver="native").validate()
    return Case(receipt, account, entry, False), OfflinePolicy(
        offline_cache(Path(tempfile.mkdtemp()), program, [entry]), redeem_limit_points=10**9,
        ledger_path=Path(tempfile.mkdtemp()) / "ledger.json", wall=NOW.timestamp)


def test_a_customer_id_redeems_offline_as_the_core_lets_it() -> None:
    """The core identifies a customer id as "app_code" (strong); offline called it "customer_id",
    which no redeem_with names: offline refused what the core allowed."""
    program = load_program(ROOT / "config" / "programs" / "seed000.toml")
    case, policy = _one(program, IdKind.CUSTOMER_ID, "1", ordinary=500)
    core = online(program, case, redeem_points=0)
    off = policy.calculate(case.receipt)
    assert core.max_points > 0
    assert off.max_points == core.max_points and off.redeemed_points == core.max_points


def test_a_negative_balance_blocks_offline_redemption_as_online() -> None:
    """Under allow_negative_balance a debt is a negative balance: the core redeems nothing; offline
    passed it as a plain debt and let the customer redeem their lots (an overspend)."""
    program = dataclasses.replace(load_program(ROOT / "config" / "programs" / "seed002.toml"),
                                  redeem_with=("card",), allow_negative_balance=True)
    case, policy = _one(program, IdKind.CARD, "2000012345", ordinary=500, debt=40)
    assert online(program, case, redeem_points=0).max_points == 0
    off = policy.calculate(case.receipt)
    assert off.max_points == 0 and off.redeemed_points == 0
    assert off.points_to_accrue == online(program, case, redeem_points=0).points_to_accrue
