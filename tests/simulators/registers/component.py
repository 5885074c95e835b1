"""Component harness: the reference core and the real gateway daemon in this process, over real sockets.

:func:`running_system` starts the core (gRPC on 127.0.0.1:0, SQLite file) and a
:class:`gateway.daemon.Daemon` with the given driver sections (HTTP on 127.0.0.1:0), registers
customers (welcome bonus), and yields a :class:`System`. :meth:`System.check` waits for the
outbox to drain and compares what the simulator recorded with what the core applied:

- the (kind, key) pairs the core applied equal the distinct keys the gateway acknowledged,
  each applied exactly once;
- every point movement of a customer belongs to an acknowledged operation (or the welcome
  bonus), and the customer's balance equals the welcome bonus plus those movements.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from gateway.config import parse_config
from gateway.daemon import Daemon
from simulators.core.server import running_core
from simulators.core.tables import Movement, Operation
from simulators.registers.native.report import Ack
from simulators.stack import DEFAULT_PROGRAM
from simulators.stack_check import CoreAdmin, read_applied

PHONES = ("+79160000101", "+79160000102", "+79160000103", "+79160000104")


@dataclass
class System:
    gateway_url: str
    core_address: str
    core_db: Path
    daemon: Daemon
    admin: CoreAdmin
    welcome: dict[str, int]  # phone -> welcome points granted

    async def drained(self, timeout_s: float = 15.0) -> None:
        assert self.daemon.outbox is not None
        deadline = time.monotonic() + timeout_s
        while True:
            stats = await self.daemon.outbox.stats()
            if stats.pending == 0:
                assert stats.rejected == 0, [r.reason for r in await self.daemon.outbox.rejected()]
                return
            assert time.monotonic() < deadline, f"outbox still has {stats.pending} pending"
            await asyncio.sleep(0.05)

    async def check(self, acks: Iterable[Ack], phones: Sequence[str] = PHONES) -> dict[str, Any]:
        """Drain, then assert applied == acknowledged and balances add up; returns figures."""
        await self.drained()
        acked = {(a.kind, a.key) for a in acks if a.key}
        applied = read_applied(self.core_db)
        doubled = {k: n for k, n in applied.counts.items() if n > 1}
        assert not doubled, doubled
        assert set(applied.counts) == acked, {
            "applied, not acknowledged": sorted(set(applied.counts) - acked)[:5],
            "acknowledged, not applied": sorted(acked - set(applied.counts))[:5],
        }
        engine = create_engine(f"sqlite:///file:{self.core_db}?mode=ro&uri=true")
        try:
            with engine.connect() as conn:
                ops = {int(i): (str(k), str(key)) for i, k, key in
                       conn.execute(select(Operation.id, Operation.kind, Operation.key)).all()}
                moves = conn.execute(select(Movement.customer_id, Movement.operation_id, Movement.kind,
                                            Movement.points)).all()
                sales = conn.execute(select(Operation.redeemed, Operation.accrued)
                                     .where(Operation.kind == "sale")).all()
        finally:
            engine.dispose()
        figures = {"redeemed": sum(int(r) for r, _ in sales), "accrued": sum(int(a) for _, a in sales),
                   "operations": len(ops)}
        for phone in phones:
            customer = await self.admin.customer(phone)
            cid = int(customer.customer_id) if customer.customer_id.isdigit() else customer.customer_id
            mine = [m for m in moves if str(m.customer_id) == str(cid)]
            for m in mine:
                assert m.operation_id is None or ops.get(int(m.operation_id)) in acked, (phone, m)
            from_ops = sum(int(m.points) for m in mine if m.operation_id is not None)
            assert customer.balance == self.welcome[phone] + from_ops, (phone, customer.balance, from_ops)
        return figures


def phone_program(tmp_path: Path) -> Path:
    """seed002 with redemption allowed on a typed phone (the tills here cannot show app codes)."""
    text = DEFAULT_PROGRAM.read_text(encoding="utf-8")
    head, sep, rest = text.partition('id = "seed002"\n')
    assert sep, "seed002.toml changed: update phone_program"
    path = tmp_path / "program.toml"
    path.write_text(head + sep + 'redeem_with = ["phone", "card", "app_code"]\n' + rest, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_system(tmp_path: Path, drivers: dict[str, dict[str, Any]], *,
                         phones: Sequence[str] = PHONES, hold_ttl_s: int = 120,
                         calc_budget_ms: int = 1500) -> AsyncIterator[System]:
    db = tmp_path / "core.db"
    async with running_core(phone_program(tmp_path), f"sqlite:///{db}") as address:
        admin = CoreAdmin(address)
        welcome = {}
        for phone in phones:
            # Registered a minute ago: cloud copies stamp receipts to the second, and a receipt
            # stamped before the welcome lot existed could not spend it.
            customer = await admin.register(phone, "Покупатель", at=datetime.now(UTC) - timedelta(minutes=1))
            welcome[phone] = int(customer.welcome_points)
        config = parse_config({
            "gateway": {"data_dir": str(tmp_path / "gw"), "listen_host": "127.0.0.1", "listen_port": 0,
                        "hold_ttl_s": hold_ttl_s, "calc_budget_ms": calc_budget_ms, "log_level": "WARNING"},
            "core": {"address": address},
            "drivers": {name: {"enabled": True, **opts} for name, opts in drivers.items()},
        }, environ={})
        daemon = Daemon(config)
        await daemon.start()
        try:
            yield System(f"http://127.0.0.1:{daemon.port}", address, db, daemon, admin, welcome)
        finally:
            await daemon.stop(timeout=5.0)
            await admin.close()
