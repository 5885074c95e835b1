"""Unit tests of the core's ledger functions (no gRPC): the paths the acceptance suite leaves
open — offline commits, expected mismatches, cancel with spent points, certificate restores,
amount-only refunds, identification variants, blocked ancestors, grants and snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import update

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.program import Program, load_program
from gateway.rules.types import RuleViolation
from simulators.core import jobs, refunds, sales, views
from simulators.core.context import Core
from simulators.core.db import Database
from simulators.core.tables import Customer

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def program(seed: str, **kw: object) -> Program:
    p = load_program(ROOT / "config" / "programs" / f"{seed}.toml")
    return dataclasses.replace(p, **kw) if kw else p  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_core(tmp_path: Path, clock: Clock, seed: str = "seed002", **kw: object) -> Iterator[Core]:
    db = Database(f"sqlite:///{tmp_path / f'{seed}.db'}")
    try:
        yield Core(db=db, program=program(seed, **kw), clock=clock)
    finally:
        db.dispose()


@pytest.fixture
def core(tmp_path: Path, clock: Clock) -> Iterator[Core]:
    yield from make_core(tmp_path, clock, welcome_points=0)


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


def register(core: Core, phone: str, referrer: str = "",
             name: str = "Анна Кузнецова") -> pb.RegisterCustomerResponse:
    return views.register_customer(
        core, pb.RegisterCustomerRequest(phone=phone, name=name, referrer_code=referrer)
    )


def grant(core: Core, cid: str, points: int) -> None:
    jobs.issue_grant(
        core, pb.IssueGrantRequest(customer=pb.CustomerRef(customer_id=cid), kind="manual", points=points)
    )


def draft(cid: str, *amounts: int, redeem: int = 0, at: datetime | None = None) -> pb.ReceiptDraft:
    d = pb.ReceiptDraft(
        customer=pb.CustomerRef(customer_id=cid),
        redeem_points=redeem,
        register_id="R1",
        staff=pb.Staff(store_id="S1", cashier_id="C1", cashier_name="Ольга"),
        lines=[pb.Line(line_id=f"L{i}", qty_milli=1000, amount=a) for i, a in enumerate(amounts, 1)],
    )
    if at is not None:
        d.occurred_at.CopyFrom(ts(at))
    return d


def balance(core: Core, cid: str) -> pb.Customer:
    return views.identify_customer(
        core, pb.IdentifyCustomerRequest(customer=pb.CustomerRef(customer_id=cid))).customer


def violation(code: str, fn: object, *args: object) -> RuleViolation:
    with pytest.raises(RuleViolation) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.code == code, info.value
    return info.value


# ---------------------------------------------------------------------------- commits


def test_offline_commit_keeps_printed_discounts_and_uses_own_accrual(core: Core) -> None:
    cid = register(core, "+79120000001").customer.customer_id
    grant(core, cid, 1000)
    printed = pb.Expected(redeemed_points=100, line_discounts={"L1": 6000, "L2": 4000}, points_to_accrue=999)
    res = sales.commit(
        core,
        pb.CommitRequest(
            idempotency_key="off-1",
            draft=draft(cid, 50_000, 50_000, redeem=100),
            expected=printed,
            offline=True,
        ),
    )
    assert [ln.discount for ln in res.calculation.lines] == [6000, 4000]
    assert res.calculation.points_to_accrue == 90_000 * 3 // 100 // 100  # own accrual: 27
    assert res.balance == 1000 - 100 + 27


def test_offline_commit_refused_when_points_are_gone(core: Core) -> None:
    cid = register(core, "+79120000002").customer.customer_id
    grant(core, cid, 50)
    req = pb.CommitRequest(
        idempotency_key="off-2",
        draft=draft(cid, 100_000, redeem=80),
        expected=pb.Expected(redeemed_points=80),
        offline=True,
    )
    violation("INSUFFICIENT_POINTS", sales.commit, core, req)
    assert balance(core, cid).balance == 50  # nothing stored


def test_online_commit_with_other_expected_is_calc_mismatch(core: Core) -> None:
    cid = register(core, "+79120000003").customer.customer_id
    grant(core, cid, 1000)
    req = pb.CommitRequest(
        idempotency_key="on-1",
        draft=draft(cid, 33_333, 33_334, redeem=50),
        expected=pb.Expected(redeemed_points=50, line_discounts={"L1": 2000, "L2": 3000}),
    )
    violation("CALC_MISMATCH", sales.commit, core, req)
    assert balance(core, cid).balance == 1000


def test_invalid_receipt_paths(core: Core) -> None:
    cid = register(core, "+79120000004").customer.customer_id
    bad = draft(cid, 100, 200)
    bad.total = 999
    assert (
        violation(
            "INVALID_RECEIPT", sales.commit, core, pb.CommitRequest(idempotency_key="b1", draft=bad)
        ).metadata["field"]
        == "draft.total"
    )
    dup = draft(cid, 100, 200)
    dup.lines[1].line_id = "L1"
    assert (
        violation("INVALID_RECEIPT", sales.calculate, core, pb.CalculateRequest(draft=dup)).metadata["field"]
        == "draft.lines[1].line_id"
    )


# ---------------------------------------------------------------------------- cancel and refund


def test_cancel_after_accrual_spent_leaves_debt_and_is_replayed(core: Core, clock: Clock) -> None:
    cid = register(core, "+79120000005").customer.customer_id
    sale = sales.commit(core, pb.CommitRequest(idempotency_key="s1", draft=draft(cid, 1_000_000)))
    assert sale.balance == 300
    d2 = draft(cid, 1_000_000, redeem=250)
    d2.lines[0].accruable = False
    assert sales.commit(core, pb.CommitRequest(idempotency_key="s2", draft=d2)).balance == 50
    ref = pb.SaleRef(operation_id=sale.operation_id)
    res = refunds.cancel(core, pb.CancelRequest(cancel_key="c1", sale=ref))
    assert (res.balance, res.debt, res.points_removed) == (0, 250, 300)  # 250 were spent: debt
    again = refunds.cancel(core, pb.CancelRequest(cancel_key="c-other", sale=ref))
    assert again.replayed and again.debt == 250
    later = sales.commit(core, pb.CommitRequest(idempotency_key="s3", draft=draft(cid, 100_000)))
    assert (later.balance, later.debt) == (0, 220)  # credits repay debt first
    violation(
        "OPERATION_CANCELLED", refunds.refund, core, pb.RefundRequest(refund_key="r1", sale=ref, full=True)
    )


def test_cancel_not_allowed_after_24h_or_refund(core: Core, clock: Clock) -> None:
    cid = register(core, "+79120000006").customer.customer_id
    s1 = sales.commit(core, pb.CommitRequest(idempotency_key="s1", draft=draft(cid, 10_000, at=T0)))
    late = pb.CancelRequest(
        cancel_key="c1",
        sale=pb.SaleRef(operation_id=s1.operation_id),
        occurred_at=ts(T0 + timedelta(hours=25)),
    )
    violation("CANCEL_NOT_ALLOWED", refunds.cancel, core, late)
    s2 = sales.commit(core, pb.CommitRequest(idempotency_key="s2", draft=draft(cid, 10_000, 5_000)))
    refunds.refund(
        core,
        pb.RefundRequest(
            refund_key="r",
            sale=pb.SaleRef(sale_key="s2"),
            lines=[pb.RefundLine(line_id="L2", qty_milli=1000)],
        ),
    )
    violation(
        "CANCEL_NOT_ALLOWED",
        refunds.cancel,
        core,
        pb.CancelRequest(cancel_key="c2", sale=pb.SaleRef(operation_id=s2.operation_id)),
    )


def test_certificate_points_restored_only_while_valid(core: Core, clock: Clock) -> None:
    cid = register(core, "+79120000007").customer.customer_id
    res = jobs.issue_grant(
        core, pb.IssueGrantRequest(customer=pb.CustomerRef(customer_id=cid), kind="partner")
    )
    assert res.points == 300 and res.expires_at.seconds  # seed002 partner: 300, cap 20 %, 30 days
    sale = sales.commit(
        core, pb.CommitRequest(idempotency_key="s", draft=draft(cid, 100_000, 100_000, redeem=200))
    )
    assert sale.calculation.redeemed_certificate == 200
    ref = pb.SaleRef(operation_id=sale.operation_id)
    r1 = refunds.refund(
        core, pb.RefundRequest(refund_key="r1", sale=ref, lines=[pb.RefundLine(line_id="L1", qty_milli=1000)])
    )
    assert r1.points_restored == 100  # certificate still valid
    after_expiry = T0 + timedelta(days=40)
    r2 = refunds.refund(
        core, pb.RefundRequest(refund_key="r2", sale=ref, full=True, occurred_at=ts(after_expiry))
    )
    assert r2.points_restored == 0  # the certificate has expired: its points are gone


def test_amount_only_refunds_are_cumulative(core: Core) -> None:
    cid = register(core, "+79120000008").customer.customer_id
    sale = sales.commit(core, pb.CommitRequest(idempotency_key="s", draft=draft(cid, 100_000)))
    assert sale.balance == 30
    ref = pb.SaleRef(operation_id=sale.operation_id)
    r1 = refunds.refund(core, pb.RefundRequest(refund_key="r1", sale=ref, amount=40_000))
    assert r1.money_refunded == 40_000 and sum(c.points for c in r1.clawbacks) == 12
    r2 = refunds.refund(core, pb.RefundRequest(refund_key="r2", sale=ref, full=True))
    assert r2.money_refunded == 60_000 and sum(c.points for c in r2.clawbacks) == 18
    assert r2.balance == 0
    violation(
        "REFUND_EXCEEDS_SALE", refunds.refund, core, pb.RefundRequest(refund_key="r3", sale=ref, full=True)
    )


# ---------------------------------------------------------------------------- identification


def test_phone_forms_qr_and_welcome_once_per_phone(tmp_path: Path, clock: Clock) -> None:
    for core in make_core(tmp_path, clock):  # seed002: welcome 300
        first = register(core, "8 (912) 345-67-89")
        assert first.created and first.welcome_points == 300 and first.customer.phone == "+79123456789"
        again = register(core, "+7 912 3456789")
        assert not again.created and again.customer.customer_id == first.customer.customer_id
        assert again.welcome_points == 0
        for typed in ("79123456789", "+79123456789"):
            got = views.identify_customer(
                core, pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone=typed))
            ).customer
            assert got.customer_id == first.customer.customer_id
            assert got.strength == pb.IDENTIFICATION_STRENGTH_WEAK
        code = views.issue_app_code(
            core, pb.IssueAppCodeRequest(customer=pb.CustomerRef(customer_id=first.customer.customer_id))
        )
        got = views.identify_customer(
            core, pb.IdentifyCustomerRequest(customer=pb.CustomerRef(qr_payload=code.qr_payload))
        ).customer
        assert got.customer_id == first.customer.customer_id
        assert got.strength == pb.IDENTIFICATION_STRENGTH_STRONG
        violation(
            "UNKNOWN_CUSTOMER",
            views.identify_customer,
            core,
            pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone="+79990000000")),
        )


def test_blocked_ancestor_is_skipped_not_passed_up(tmp_path: Path, clock: Clock) -> None:
    for core in make_core(tmp_path, clock, welcome_points=0):
        a = register(core, "+79120000011").customer
        b = register(core, "+79120000012", referrer=a.referral_code).customer
        c = register(core, "+79120000013", referrer=b.phone).customer
        block = update(Customer).where(Customer.id == int(b.customer_id)).values(blocked=True)
        core.db.transaction(
            lambda s, stmt=block: s.execute(  # type: ignore[misc]
                stmt
            )
        )
        res = sales.commit(core, pb.CommitRequest(idempotency_key="s", draft=draft(c.customer_id, 1_000_000)))
        paid = {(p.customer_id, p.kind): p.points for p in res.payouts}
        assert (b.customer_id, "referral") not in paid
        assert paid[(a.customer_id, "referral")] == 100  # level 2: 1 % of 1 000 000 -> 100 points


# ---------------------------------------------------------------------------- grants, jobs, snapshots


def test_review_once_per_platform_and_partner_registers(core: Core) -> None:
    cid = register(core, "+79120000021").customer.customer_id
    ref = pb.CustomerRef(customer_id=cid)
    assert (
        jobs.issue_grant(core, pb.IssueGrantRequest(customer=ref, kind="review", platform="2GIS")).points
        == 100
    )
    violation(
        "GRANT_ALREADY_ISSUED",
        jobs.issue_grant,
        core,
        pb.IssueGrantRequest(customer=ref, kind="review", platform="2GIS"),
    )
    new = pb.CustomerRef(phone="+79120000022")
    res = jobs.issue_grant(
        core, pb.IssueGrantRequest(customer=new, kind="partner", platform="fitness", grant_key="p1")
    )
    assert res.points == 300
    replay = jobs.issue_grant(
        core, pb.IssueGrantRequest(customer=new, kind="partner", platform="fitness", grant_key="p1")
    )
    assert replay.replayed and replay.lot_id == res.lot_id
    report = views.balances(core, pb.GetBalancesRequest())
    assert {e.phone for e in report.customers} == {"+79120000021", "+79120000022"}


def test_winback_once_per_absence_and_expiry_counts(core: Core, clock: Clock) -> None:
    cid = register(core, "+79120000031").customer.customer_id
    sales.commit(core, pb.CommitRequest(idempotency_key="s", draft=draft(cid, 100_000, at=T0)))
    soon = jobs.run_jobs(core, pb.RunJobsRequest(at=ts(T0 + timedelta(days=10))))
    assert soon.certificates_issued == 0
    later = jobs.run_jobs(core, pb.RunJobsRequest(at=ts(T0 + timedelta(days=31))))
    assert later.certificates_issued == 1  # seed002 winback: 500 points, 14 days
    again = jobs.run_jobs(core, pb.RunJobsRequest(at=ts(T0 + timedelta(days=32))))
    assert again.certificates_issued == 0
    gone = jobs.run_jobs(core, pb.RunJobsRequest(at=ts(T0 + timedelta(days=60))))
    assert (gone.lots_expired, gone.points_expired) == (1, 500)


def test_balances_paging_and_active_since(core: Core, clock: Clock) -> None:
    ids = [register(core, f"+7912000004{i}").customer.customer_id for i in range(5)]
    page1 = views.balances(core, pb.GetBalancesRequest(page_size=2))
    page2 = views.balances(core, pb.GetBalancesRequest(page_size=2, page_token=page1.next_page_token))
    page3 = views.balances(core, pb.GetBalancesRequest(page_size=2, page_token=page2.next_page_token))
    got = [e.customer_id for p in (page1, page2, page3) for e in p.customers]
    assert got == ids and page3.next_page_token == ""
    clock.now = T0 + timedelta(days=1)
    sales.commit(core, pb.CommitRequest(idempotency_key="s", draft=draft(ids[3], 100_000)))
    recent = views.balances(core, pb.GetBalancesRequest(active_since=ts(T0 + timedelta(hours=12))))
    assert [e.customer_id for e in recent.customers] == [ids[3]]
    assert recent.customers[0].ordinary_points == 30 and recent.program_version == core.version
