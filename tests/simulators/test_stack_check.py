"""The exactly-once check of :mod:`simulators.stack_check` against a real core database file."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from simulators.core.db import Database
from simulators.core.tables import Operation
from simulators.registers.native.report import Ack
from simulators.stack import free_port
from simulators.stack_check import AppliedOps, check_delivery, read_applied


def ack(kind: str, identity: str, key: str) -> Ack:
    return Ack(kind, identity, "till-01", key, False, 1, {})


def test_read_applied_lists_documents_by_kind(tmp_path: Path) -> None:
    path = tmp_path / "core.db"
    db = Database(f"sqlite:///{path}")
    now = datetime.now(UTC)

    def add(kind: str, key: str) -> None:
        db.transaction(lambda s: s.add(Operation(kind=kind, key=key, content_hash="h", occurred_at=now,
                                                  created_at=now)))

    for kind, key in [("sale", "s1"), ("sale", "s2"), ("refund", "r1"), ("grant", "g1")]:
        add(kind, key)
    db.dispose()
    applied = read_applied(path)
    assert applied.keys("sale") == {"s1", "s2"}
    assert applied.keys() == {"s1", "s2", "r1"}  # grants are not till documents
    assert applied.count("refund") == 1


def test_check_delivery_finds_lost_doubled_and_queued() -> None:
    applied = AppliedOps(Counter({("sale", "k1"): 1, ("sale", "k2"): 2, ("sale", "k3a"): 1,
                                  ("sale", "k3b"): 1, ("sale", "extra"): 1}))
    acks = [ack("sale", "r1", "k1"), ack("sale", "r1", "k1"), ack("sale", "r2", "k2"),
            ack("sale", "r3", "k3a"), ack("sale", "r3", "k3b"), ack("sale", "r4", "k4"),
            ack("refund", "r5", "k5")]
    check = check_delivery(acks, applied, operator_queue_keys=["k5"])
    assert check.lost == ["k4"]
    assert check.in_operator_queue == ["k5"]
    assert check.duplicates == ["sale:k2 x2", "sale r3 applied under keys ['k3a', 'k3b']"]
    assert check.applied_unacknowledged == ["sale:extra"]
    assert check.acknowledged_sales == 5 and check.sales_at_core == 4
    assert not check.ok


def test_check_delivery_ok_when_each_ack_applied_once() -> None:
    applied = AppliedOps(Counter({("sale", "a"): 1, ("refund", "b"): 1}))
    check = check_delivery([ack("sale", "x", "a"), ack("refund", "y", "b")], applied)
    assert check.ok and check.problems() == "none"
    assert check.applied_total == 2


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
