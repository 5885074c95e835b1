"""Unit tests of the core's storage layer and its operator surfaces: schema versioning, UTC
datetimes, bounded retries of transient failures, the report figures, and ``posgw core``
(serving until SIGTERM, --check-program)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from simulators.core import refunds, reports, sales, views
from simulators.core.context import Core
from simulators.core.db import Database
from simulators.core.tables import SCHEMA_VERSION, Meta, Operation
from tests.simulators.core.test_unit_ledger import T0, Clock, draft, program, register, ts

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'core.db'}")
    yield database
    database.dispose()


def test_schema_version_recorded_and_newer_refused(db: Database, tmp_path: Path) -> None:
    assert db.meta("schema_version") == str(SCHEMA_VERSION)

    def bump(s: Session) -> None:
        row = s.get(Meta, "schema_version")
        assert row is not None
        row.value = str(SCHEMA_VERSION + 1)

    db.transaction(bump)
    with pytest.raises(RuntimeError, match="newer"):
        Database(db.url)


def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    at = datetime(2025, 3, 10, 0, 0, tzinfo=timezone(timedelta(hours=3)))

    def write(s: Session) -> int:
        op = Operation(kind="t", key="k", content_hash="h", occurred_at=at, created_at=at)
        s.add(op)
        s.flush()
        return op.id

    op_id = db.transaction(write)
    got = db.transaction(lambda s: s.get(Operation, op_id).occurred_at, write=False)  # type: ignore[union-attr]
    assert got == at and got.tzinfo == UTC


def test_transient_failures_are_retried_a_bounded_number_of_times(db: Database) -> None:
    calls: list[int] = []

    def flaky(s: Session) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("BEGIN", {}, Exception("database is locked"))
        return "done"

    assert db.transaction(flaky) == "done" and len(calls) == 3

    def always(s: Session) -> None:
        calls.append(1)
        raise OperationalError("BEGIN", {}, Exception("database is locked"))

    calls.clear()
    with pytest.raises(OperationalError):
        db.transaction(always)
    assert len(calls) == 6


def test_report_figures(db: Database) -> None:
    core = Core(db=db, program=program("seed002", welcome_points=0), clock=Clock())
    a = register(core, "+79120000101").customer.customer_id
    b = register(core, "+79120000102", referrer="+79120000101").customer.customer_id
    sales.commit(core, pb.CommitRequest(idempotency_key="s1", draft=draft(a, 100_000)))
    sales.commit(core, pb.CommitRequest(idempotency_key="s2", draft=draft(a, 50_000, redeem=30)))
    s3 = sales.commit(core, pb.CommitRequest(idempotency_key="s3", draft=draft(b, 200_000)))
    s4 = sales.commit(core, pb.CommitRequest(idempotency_key="s4", draft=draft(b, 10_000)))
    refunds.cancel(core, pb.CancelRequest(cancel_key="c4", sale=pb.SaleRef(operation_id=s4.operation_id)))
    refunds.refund(
        core,
        pb.RefundRequest(
            refund_key="r3",
            sale=pb.SaleRef(operation_id=s3.operation_id),
            amount=20_000,
            staff=pb.Staff(cashier_id="C1"),
        ),
    )
    r = reports.report(
        core, pb.GetReportRequest(**{"from": ts(T0 - timedelta(days=1))}, to=ts(T0 + timedelta(days=1)))
    )
    assert (r.members, r.buyers, r.receipts) == (2, 2, 3)  # the cancelled sale does not count
    assert r.gross == 350_000 - 20_000 and r.money_refunded == 20_000 and r.refunds == 1
    assert r.paid == 347_000 - 20_000 and r.discounts == 3_000
    assert r.actual_discount_bp == 3_000 * 10_000 // 330_000
    assert r.referral_revenue == 180_000 and r.average_receipt == 350_000 // 3
    assert r.points_issued_by_source["accrual"] == 30 + 14 + 60 - 6  # minus the refund's clawback
    assert r.points_issued_by_source["referral"] == 100 - 10  # a's 5 % of b's 200 000
    assert r.points_redeemed == 30
    cashier = {c.cashier_id: c for c in r.cashiers}["C1"]
    assert (cashier.receipts, cashier.receipts_with_redemption, cashier.refunds) == (3, 1, 1)
    assert {c.channel: c.new_members for c in r.channels} == {"cashier": 1, "referral": 1}


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    prog = ROOT / "config" / "programs" / "seed002.toml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "core",
            "--listen",
            "127.0.0.1:0",
            "--program",
            str(prog),
            "--db",
            f"sqlite:///{tmp_path / 'cli.db'}",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "core listening address=127.0.0.1:" in line, line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_check_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["core", "--check-program", str(ROOT / "config" / "programs" / "seed000.toml")]) == 0
    assert "seed000" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\nexpiry_days = -1\n', encoding="utf-8")
    assert main(["core", "--check-program", str(bad)]) == 1
    assert "expiry_days" in capsys.readouterr().out


def test_views_customer_shows_holds(db: Database) -> None:
    core = Core(db=db, program=program("seed002", welcome_points=0), clock=Clock())
    cid = register(core, "+79120000111").customer.customer_id
    sales.commit(core, pb.CommitRequest(idempotency_key="s", draft=draft(cid, 1_000_000)))
    calc = sales.calculate(core, pb.CalculateRequest(draft=draft(cid, 100_000, redeem=100), hold_ttl_s=60))
    assert calc.hold_id
    req = pb.IdentifyCustomerRequest(customer=pb.CustomerRef(customer_id=cid))
    got = views.identify_customer(core, req).customer
    assert (got.balance, got.held_points) == (300, 100)
