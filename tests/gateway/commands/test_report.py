"""``posgw report`` against a real reference core over a socket; and every CLI command loads."""

from __future__ import annotations

import argparse
import importlib
import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from gateway.cli import COMMANDS, main
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core.server import serve_in_thread

ROOT = Path(__file__).resolve().parents[3]
SALE_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _one_sale(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LoyaltyCoreStub(channel)
        customer = stub.RegisterCustomer(pb.RegisterCustomerRequest(phone="+79990001122", name="Анна Котова"),
                                         timeout=10)
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
