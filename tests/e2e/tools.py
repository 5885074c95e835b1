"""Helpers shared by the end-to-end tests: customers, calc probes at the till, the exactly-once check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from simulators.fleet import ScriptedTill, lines
from simulators.registers.native.report import Ack, percentile
from simulators.stack import Stack
from simulators.stack_check import DeliveryCheck, check_delivery

PHONES = tuple(f"+7916200{i:04d}" for i in range(1, 9))


async def register_all(stack: Stack, phones: Sequence[str] = PHONES) -> None:
    for i, phone in enumerate(phones):
        await stack.admin.register(phone, f"Покупатель {i + 1}")


async def probe(till: ScriptedTill, n: int, customer: str) -> list[tuple[float, bool]]:
    """``n`` receipts calculated (timed at the till) and sold; [(calc ms, offline), ...]."""
    out = []
    for _ in range(n):
        receipt = till.receipt(lines(("4600001", 1_000), ("4600010", 2_000)), customer)
        applied, ack = await till.sell(receipt)
        assert ack is not None, f"sale {receipt.identity} not acknowledged"
        out.append((till.rec.calc_ms[-1], applied.offline))
    return out


async def probe_for(till: ScriptedTill, seconds: float, customer: str) -> list[tuple[float, bool]]:
    """Like :func:`probe`, for at least ``seconds`` of wall time (and at least one receipt)."""
    out: list[tuple[float, bool]] = []
    deadline = time.monotonic() + seconds
    while not out or time.monotonic() < deadline:
        out += await probe(till, 1, customer)
        await asyncio.sleep(0.02)
    return out


def figures(samples: list[tuple[float, bool]]) -> str:
    ms = [m for m, _ in samples]
    return (f"n={len(ms)} p50={percentile(ms, 50):.1f} ms p95={percentile(ms, 95):.1f} ms "
            f"max={max(ms):.1f} ms offline={sum(o for _, o in samples)}")


async def assert_exactly_once(stack: Stack, acks: Iterable[Ack], *, drain_s: float = 60.0) -> DeliveryCheck:
    """Wait for the outbox to drain, then: every acknowledged document applied once, nothing else."""
    began = time.monotonic()
    pending = await stack.wait_drained(drain_s)
    assert pending == 0, f"outbox still holds {pending} events after {drain_s} s"
    queue = await stack.operator_queue()
    assert queue == [], f"operator queue not empty: {queue[:3]}"
    check = check_delivery(acks, stack.applied())
    assert check.ok, check.problems()
    assert check.applied_unacknowledged == [], check.applied_unacknowledged[:10]
    print(f"delivered: {check.acknowledged} documents acknowledged, {check.applied_total} applied "
          f"(drained in {time.monotonic() - began:.1f} s)")
    return check
