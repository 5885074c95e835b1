"""``posgw report`` against a real reference core over a socket; and every CLI command loads."""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from xml.etree import ElementTree

import grpc
import pytest

from gateway.cli import COMMANDS, main
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from gateway.outbox import Outbox
from gateway.receipt import CustomerId, Event, EventKind, IdKind, Line
from simulators.core.server import serve_in_thread
from tests.gateway.receipt_fixtures import make_receipt

ROOT = Path(__file__).resolve().parents[3]
SALE_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _one_sale(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)
        customer = stub.RegisterCustomer(pb.RegisterCustomerRequest(phone="+79990001122", name="Анна Котова"),
                                         timeout=10).customer
        draft = pb.ReceiptDraft(
            customer=pb.CustomerRef(customer_id=customer.customer_id), register_id="R1", receipt_number="1",
            lines=[pb.Line(line_id="L1", sku="A", qty_milli=1000, price=100_000, amount=100_000)],
            staff=pb.Staff(cashier_id="c7", cashier_name="Ольга"),
        )
        draft.occurred_at.FromDatetime(SALE_AT)
        stub.Commit(pb.CommitRequest(idempotency_key="report-test-1", draft=draft), timeout=10)


def test_report_prints_the_period_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = ROOT / "config" / "programs" / "seed002.toml"
    with serve_in_thread(program, f"sqlite:///{tmp_path / 'core.db'}") as address:
        _one_sale(address)
        march = ["report", "--core", address, "--from", "2026-03-01", "--to", "2026-04-01"]
        assert main([*march, "--json"]) == 0
        figures = json.loads(capsys.readouterr().out)
        assert figures["receipts"] == "1" and figures["gross"] == "100000"  # int64 as JSON strings
        assert [c["cashier_id"] for c in figures["cashiers"]] == ["c7"]
        assert main(march) == 0
        text = capsys.readouterr().out
        assert "receipts" in text and "1 000.00 ₽" in text and "cashier c7 Ольга" in text
        april = ["report", "--core", address, "--from", "2026-04-01", "--to", "2026-05-01", "--json"]
        assert main(april) == 0
        assert "receipts" not in json.loads(capsys.readouterr().out)  # nothing in April (zero omitted)


def test_report_says_when_the_core_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "--core", "127.0.0.1:1", "--from", "2026-03-01", "--to", "2026-04-01",
                 "--timeout", "2"])
    assert code == 1
    assert "did not answer" in capsys.readouterr().err


def test_report_refuses_an_empty_period(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--core", "127.0.0.1:1", "--from", "2026-03-01", "--to", "2026-03-01"]) == 2


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads(name: str) -> None:
    module = importlib.import_module(f"gateway.commands.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert callable(module.run)


# ------------------------------------------------------------------ posgw report day|shift|cashier


def _sale(number: str, at: datetime, *, customer: bool, cashier: tuple[str, str], shift: str = "1",
          offline: bool = False, total: int = 10_000) -> Event:
    receipt = make_receipt(receipt_number=number, occurred_at=at, shift=shift, redeem_points=0,
                           cashier_id=cashier[0], cashier_name=cashier[1],
                           lines=(Line("1", "sku", "Item", price=total, qty_milli=1000, amount=total),),
                           customer=CustomerId(IdKind.PHONE, "+79990001122") if customer else None)
    return Event(EventKind.SALE, receipt.sale_key(), "R1", at, receipt=receipt, offline=offline)


def _answer(accrued: int, redeemed: int, *, known: bool = True) -> str:
    calc = {"customer_id": "7" if known else "", "points_to_accrue": str(accrued),
            "redeemed_ordinary": str(redeemed)}
    return json.dumps({"commit": {"calculation": calc}})


@pytest.fixture
def gateway_records(tmp_path: Path) -> tuple[Path, date, date]:
    """Yesterday: 3 sales (2 delivered with a customer, 1 anonymous), 1 refund; today: 1 delivered sale
    answered offline and 1 pending; a resolved sale (not counted)."""
    now = datetime.now().astimezone()
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    noon = lambda d: datetime.combine(d, time(12)).astimezone()  # noqa: E731
    olga, ivan = ("c1", "Ольга"), ("c2", "Иван")
    events = [
        (_sale("1", noon(yesterday), customer=True, cashier=olga), "delivered", _answer(100, 500)),
        (_sale("2", noon(yesterday), customer=True, cashier=olga, total=30_000), "delivered",
         _answer(300, 0)),
        (_sale("3", noon(yesterday), customer=False, cashier=ivan), "delivered",
         _answer(0, 0, known=False)),
        (_sale("4", noon(today), customer=True, cashier=ivan, shift="2", offline=True), "delivered",
         _answer(50, 0)),
        (_sale("5", noon(today), customer=True, cashier=ivan, shift="2"), "pending", ""),
        (_sale("6", noon(today), customer=True, cashier=ivan, shift="2"), "resolved", ""),
    ]
    refund_ev = Event(EventKind.REFUND, "native:R1:refund:1", "R1", noon(yesterday),
                      sale_key=events[0][0].key, refund_full=True)

    async def seed() -> None:
        ob = await Outbox.open(tmp_path / "outbox.db")
        try:
            for ev, _, _ in events:
                await ob.append(ev)
            await ob.append(refund_ev)
            rows = {r.key: r for r in await ob.next_batch(100)}
            for ev, state, answer in events:
                row = rows[ev.key]
                if state == "delivered":
                    await ob.mark_delivered(row.id, answer)
                elif state == "resolved":
                    await ob.mark_rejected(row.id, "UNKNOWN_CUSTOMER", "x")
                    await ob.resolve(row.id, "sold without loyalty")
            await ob.mark_delivered(rows[refund_ev.key].id, json.dumps({"refund": {"points_restored": "0"}}))
        finally:
            await ob.close()

    asyncio.run(seed())
    return tmp_path / "outbox.db", yesterday, today


def test_report_day_table_csv_json_and_chart(
    gateway_records: tuple[Path, date, date], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path, yesterday, today = gateway_records
    period = ["--outbox", str(path), "--from", yesterday.isoformat(),
              "--to", (today + timedelta(days=1)).isoformat()]
    chart = tmp_path / "days.svg"
    assert main(["report", "day", *period, "--format", "json", "--chart", str(chart)]) == 0
    data = json.loads(capsys.readouterr().out)
    first, second = data["rows"]
    assert first["group"] == yesterday.isoformat() and second["group"] == today.isoformat()
    assert (first["receipts"], first["with_loyalty"], first["points_accrued"],
            first["points_redeemed"]) == (3, 2, 400, 500)
    assert (first["total"], first["loyalty_discount"], first["refunds"],
            first["offline"]) == (50_000, 500, 1, 0)
    assert first["loyalty_share_pct"] == 66.7 and first["actual_discount_pct"] == 1.0
    assert (second["receipts"], second["with_loyalty"], second["offline"],
            second["not_delivered"]) == (2, 1, 1, 1)
    assert data["total"]["receipts"] == 5 and data["total"]["points_accrued"] == 450

    svg = ElementTree.fromstring(chart.read_text(encoding="utf-8"))
    bars = [el for el in svg.iter("{http://www.w3.org/2000/svg}rect") if el.get("class") == "receipts"]
    assert [(b.get("data-day"), b.get("data-receipts")) for b in bars] == [
        (yesterday.isoformat(), "3"), (today.isoformat(), "2")]
    assert float(bars[0].get("height", 0)) > float(bars[1].get("height", 0)) > 0
    assert [el.get("class") for el in svg.iter("{http://www.w3.org/2000/svg}polyline")] == ["discount"]

    assert main(["report", "day", *period, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["receipts"] for r in rows] == ["3", "2"] and rows[0]["actual_discount_pct"] == "1.0"
    assert main(["report", "day", *period]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == ["day", "receipts", "loyalty", "share"]
    assert table[2].split()[:4] == [yesterday.isoformat(), "3", "2", "66.7"]
    assert table[-1].split()[:3] == ["total", "5", "3"]


def test_report_shift_and_cashier(
    gateway_records: tuple[Path, date, date], capsys: pytest.CaptureFixture[str],
) -> None:
    path, yesterday, today = gateway_records
    period = ["--outbox", str(path), "--from", yesterday.isoformat(),
              "--to", (today + timedelta(days=1)).isoformat()]
    assert main(["report", "shift", *period, "--format", "json"]) == 0
    shifts = {r["group"]: r["receipts"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert shifts == {"R1 / shift 1": 3, "R1 / shift 2": 2}
    assert main(["report", "cashier", *period, "--format", "json"]) == 0
    cashiers = {r["group"]: (r["receipts"], r["points_redeemed"], r["refunds"])
                for r in json.loads(capsys.readouterr().out)["rows"]}
    assert cashiers == {"c1 Ольга": (2, 500, 1), "c2 Иван": (3, 0, 0)}  # the refund where its sale is
    assert main(["report", "cashier", "--outbox", str(path), "--from", "2020-01-01",
                 "--to", "2020-01-02"]) == 0
    assert "no receipts from 2020-01-01 to 2020-01-01" in capsys.readouterr().out


def test_report_views_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "day"]) == 2
    assert "posgw report: give --config FILE or --outbox PATH" in capsys.readouterr().err
    assert main(["report", "day", "--outbox", str(tmp_path / "none.db")]) == 1
    assert "none.db" in capsys.readouterr().err
    assert main(["report", "day", "--outbox", "x", "--from", "2026-03-02", "--to", "2026-03-01"]) == 2
    assert main(["report"]) == 2
    assert "day|shift|cashier" in capsys.readouterr().err


def test_refunds_count_only_when_applied_and_what_is_not_applied_is_shown_by_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Yesterday: 2 sales (one refused by the core), 4 refunds of the first: applied, in the operator
    queue, waiting for its sale, on its way. Only the applied one is a refund; the others and the
    refused sale are shown as rejected, waiting and pending, each under its own name."""
    noon = datetime.combine(date.today() - timedelta(days=1), time(12)).astimezone()
    sale = _sale("1", noon, customer=True, cashier=("c1", "Ольга"))
    refused = _sale("2", noon, customer=True, cashier=("c1", "Ольга"))
    refunds = [Event(EventKind.REFUND, f"native:R1:refund:{n}", "R1", noon, sale_key=sale.key,
                     refund_full=True) for n in range(4)]

    async def seed() -> None:
        ob = await Outbox.open(tmp_path / "outbox.db")
        try:
            for ev in (sale, refused, *refunds):
                await ob.append(ev)
            rows = {r.key: r for r in await ob.next_batch(100)}
            await ob.mark_delivered(rows[sale.key].id, _answer(100, 0))
            await ob.mark_rejected(rows[refused.key].id, "UNKNOWN_CUSTOMER", "not known")
            await ob.mark_delivered(rows[refunds[0].key].id, json.dumps({"refund": {"points_restored": "0"}}))
            await ob.mark_rejected(rows[refunds[1].key].id, "SALE_NEVER_ARRIVED", "no sale")
            assert await ob.mark_waiting(rows[refunds[2].key].id, 1, "SALE_NOT_FOUND", "not yet")
        finally:
            await ob.close()

    asyncio.run(seed())
    day = noon.date()
    period = ["--outbox", str(tmp_path / "outbox.db"), "--from", day.isoformat(),
              "--to", (day + timedelta(days=1)).isoformat()]
    assert main(["report", "day", *period, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert (row["receipts"], row["refunds"]) == (2, 1)  # the refunds not applied are not refunds
    assert (row["pending"], row["waiting"], row["rejected"], row["not_delivered"]) == (1, 1, 2, 4)
    assert row["with_loyalty"] == 1 and row["points_accrued"] == 100  # the refused sale has none
    assert main(["report", "cashier", *period]) == 0
    head, line = capsys.readouterr().out.splitlines()[1:3]
    assert head.split()[-5:] == ["offline", "refunds", "pending", "waiting", "rejected"]
    assert line.split()[-5:] == ["0", "1", "1", "1", "2"]
