"""simulators.core.admin: the customer listing read from a real reference core's SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from simulators.core.admin import list_customers
from simulators.core.server import serve_in_thread

SEED002 = Path(__file__).resolve().parents[3] / "config" / "programs" / "seed002.toml"


def test_list_customers_with_cards_balances_search_and_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'core.db'}"
    with serve_in_thread(SEED002, url) as address, grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)
        anna = stub.RegisterCustomer(pb.RegisterCustomerRequest(phone="+79161000001", name="Анна"),
                                     timeout=10).customer
        stub.RegisterCustomer(pb.RegisterCustomerRequest(card="CARD-9", name="Борис"), timeout=10)
        stub.RegisterCustomer(pb.RegisterCustomerRequest(phone="+79161000003", name="Вера"), timeout=10)
        stub.IssueGrant(pb.IssueGrantRequest(customer=pb.CustomerRef(phone="+79161000001"), kind="manual",
                                             points=40, grant_key="g1"), timeout=10)
        rows = list_customers(url)
        assert [(r.id, r.phone, r.name, r.cards) for r in rows] == [
            (1, "+79161000001", "Анна", ()), (2, "", "Борис", ("CARD-9",)), (3, "+79161000003", "Вера", ())]
        assert rows[0].balance == anna.balance + 40 and rows[0].tier == anna.tier and not rows[0].blocked
        assert [r.name for r in list_customers(url, search="card-")] == ["Борис"]  # by card, any case
        assert [r.name for r in list_customers(url, search="вера")] == ["Вера"]
        assert [r.id for r in list_customers(url, limit=2)] == [1, 2]
        before = list_customers(url, at=datetime.now(UTC) - timedelta(days=1))  # lots not available yet
        assert before[0].balance == 0
