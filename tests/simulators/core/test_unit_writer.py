"""The SQLite group-commit writer: units of one batch, failures before / after writing, and
Commits of related customers (buyer and their inviter) applied in the same batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.program import load_program
from gateway.rules.types import RuleViolation
from simulators.core import sales, views
from simulators.core.context import Core
from simulators.core.db import Database
from simulators.core.tables import Customer, Meta

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        yield d
    finally:
        d.dispose()


def one_batch(db: Database, works: list[Any]) -> list[Any]:
    """Submit ``works`` so that the writer applies them in ONE batch; their futures."""
    assert db.batcher is not None
    started, go = threading.Event(), threading.Event()

    def gate(s: Session) -> None:
        started.set()
        assert go.wait(10)

    first = db.batcher.submit(gate)
    assert started.wait(10)  # the writer is inside the gate's batch: the rest queue up
    futures = [db.batcher.submit(w) for w in works]
    go.set()
    first.result(10)
    for f in futures:
        f.exception(10)
    return futures


def put(key: str, fail: bool = False, before: bool = False) -> Any:
    def work(s: Session) -> str:
        if fail and before:
            raise RuleViolation("CALC_MISMATCH", "refused before writing")
        s.execute(text("INSERT INTO meta (key, value) VALUES (:k, 'v')"), {"k": key})
        if fail:
            raise RuleViolation("INSUFFICIENT_POINTS", "refused after writing")
        return key

    return work


def keys(db: Database) -> set[str]:
    with db.sessions() as s:
        return set(s.scalars(select(Meta.key).where(Meta.key.like("k%"))))


def test_unit_failing_after_writing_is_undone_alone(db: Database) -> None:
    futures = one_batch(db, [put("k1"), put("k2", fail=True), put("k3")])
    assert [f.result() for f in (futures[0], futures[2])] == ["k1", "k3"]
    exc = futures[1].exception()
    assert isinstance(exc, RuleViolation) and exc.code == "INSUFFICIENT_POINTS"
    assert keys(db) == {"k1", "k3"}


def test_unit_refused_before_writing_leaves_the_others(db: Database) -> None:
    futures = one_batch(db, [put("k1"), put("k2", fail=True, before=True), put("k3")])
    exc = futures[1].exception()
    assert isinstance(exc, RuleViolation) and exc.code == "CALC_MISMATCH"
    assert keys(db) == {"k1", "k3"}


def test_pending_orm_object_of_a_refused_unit_is_not_committed(db: Database) -> None:
    def sloppy(s: Session) -> None:
        s.add(Meta(key="k-pending", value="v"))
        raise RuleViolation("CALC_MISMATCH", "refused with an object pending")

    futures = one_batch(db, [put("k1"), sloppy, put("k3")])
    assert isinstance(futures[1].exception(), RuleViolation)
    assert keys(db) == {"k1", "k3"}


def test_rollback_clears_the_lot_cache(db: Database) -> None:
    db.sql.lots.by_id[1] = (1, object())  # type: ignore[assignment]
    one_batch(db, [put("k1", fail=True)])
    assert db.sql.lots.by_id == {}


def _draft(phone: str, number: str, amount: int) -> pb.ReceiptDraft:
    return pb.ReceiptDraft(
        customer=pb.CustomerRef(phone=phone),
        lines=[pb.Line(line_id="1", sku="A", qty_milli=1000, amount=amount)],
        register_id="R1",
        receipt_number=number,
    )


def test_buyer_and_inviter_in_one_batch_lose_no_update(tmp_path: Path) -> None:
    """The inviter buys and earns referral points from the friend's purchases in the same batch:
    every accrual, payout and counter lands (one view per customer inside each unit)."""
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        prog = load_program(ROOT / "config" / "programs" / "seed002.toml")
        core = Core(db=db, program=prog, clock=lambda: T0)
        joined = views.register_customer(core, pb.RegisterCustomerRequest(phone="+79160000001", name="A"))
        inviter = joined.customer
        friend = views.register_customer(
            core,
            pb.RegisterCustomerRequest(phone="+79160000002", name="B", referrer_code=inviter.referral_code),
        ).customer
        works = []
        for i in range(3):
            works.append(sales.commit_work(core, pb.CommitRequest(
                idempotency_key=f"A{i}", draft=_draft(inviter.phone, f"A{i}", 100_000))))  # fmt: skip
            works.append(sales.commit_work(core, pb.CommitRequest(
                idempotency_key=f"B{i}", draft=_draft(friend.phone, f"B{i}", 200_000))))  # fmt: skip
        results = [f.result() for f in one_batch(db, works)]
        # seed002: tier 1 accrues 3 %, referral level 1 pays 5 % of the friend's accrual base
        own = 3 * (100_000 * 300 // 10_000 // 100)
        referral = 3 * (200_000 * 500 // 10_000 // 100)
        assert sum(p.points for r in results for p in r.payouts if p.kind == "referral") == referral
        with db.sessions() as s:
            a = s.get(Customer, int(inviter.customer_id))
            b = s.get(Customer, int(friend.customer_id))
            assert a is not None and b is not None
            assert (a.purchase_count, a.total_spent, a.effective_invited) == (3, 300_000, 1)
            assert (b.purchase_count, b.total_spent) == (3, 600_000)
        req = pb.IdentifyCustomerRequest(customer=pb.CustomerRef(phone=inviter.phone))
        got = views.identify_customer(core, req).customer
        assert got.balance == joined.welcome_points + own + referral
    finally:
        db.dispose()
