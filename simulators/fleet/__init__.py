"""Tills that keep selling until told to stop, and a scripted till for exact scenarios.

Owns two drivers of the native-API till simulator (:mod:`simulators.registers.native`):

- :class:`Fleet`: N :class:`~simulators.registers.native.Till` objects selling concurrently
  (optionally rate limited) until :meth:`Fleet.stop`; unlike ``run_tills`` it has no receipt
  count, so it runs for as long as a scenario (a crash schedule, an outage) lasts. Each till
  retries an unacknowledged commit with the same receipt identity, as real tills do;
- :class:`ScriptedTill`: one till whose receipts the caller writes line by line (the demo's
  trading day), with calculate → apply → commit and refunds, duplicates and answers recorded
  in the same :class:`~simulators.registers.native.report.Recorder` shape.

Both record every acknowledgement (:class:`~simulators.registers.native.Ack`): the ground
truth :func:`simulators.stack_check.check_delivery` compares with the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp

from simulators.registers.native import Applied, RateLimiter, SimReport, Till, TillConfig, TillReceipt
from simulators.registers.native.catalog import CATALOG, SimLine, line_gross
from simulators.registers.native.client import NativeClient, RetriableStatus, TransportError
from simulators.registers.native.receipts import AnswerError, apply_answer
from simulators.registers.native.report import Ack, Recorder
from simulators.registers.native.till import MSK, parse_customer


class Fleet:
    """``tills`` tills selling from :meth:`start` until :meth:`stop`; see the module docstring."""

    def __init__(self, gateway_url: str, api_key: str, *, tills: int = 4, rate: float = 0.0, seed: int = 1,
                 customers: Sequence[str] = (), config: TillConfig | None = None, prefix: str = "till",
                 shift: str | None = None, recorder: Recorder | None = None) -> None:
        self.gateway_url, self.api_key, self.tills, self.seed = gateway_url, api_key, tills, seed
        self.config = config or TillConfig(retry_for_s=120.0)
        self.customers = [parse_customer(c) for c in customers]
        self.prefix = prefix
        self.shift = shift or datetime.now(MSK).strftime("%Y%m%d%H%M%S")
        self.recorder = recorder or Recorder()
        self._limiter = RateLimiter(rate)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    async def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"fleet-{self.prefix}")

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=max(2 * self.tills, 10))
        async with aiohttp.ClientSession(connector=connector) as session:
            client = NativeClient(session, self.gateway_url, self.api_key)

            async def work(till: Till) -> None:
                while not self._stopping.is_set():
                    await self._limiter.acquire()
                    if self._stopping.is_set():
                        return
                    await till.sell()

            async with asyncio.TaskGroup() as group:
                for i in range(self.tills):
                    till = Till(i, client, self.recorder, rng=random.Random(f"{self.seed}:{i}"),
                                shift=self.shift, prefix=self.prefix, customers=self.customers,
                                config=self.config)
                    group.create_task(work(till), name=f"fleet-{till.register_id}")

    async def stop(self, timeout_s: float = 180.0) -> SimReport:
        """Let every till finish its current receipt (commit retries included), then report."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout_s)
        return self.report()

    def report(self) -> SimReport:
        return self.recorder.report(seed=self.seed, tills=self.tills,
                                    elapsed_s=time.monotonic() - self._started)


def product(sku: str) -> Any:
    return next(p for p in CATALOG if p.sku == sku)


def lines(*items: tuple[str, int]) -> tuple[SimLine, ...]:
    """Receipt lines from (sku, qty_milli) pairs, line ids "1", "2", ..."""
    out = []
    for i, (sku, qty) in enumerate(items):
        p = product(sku)
        out.append(SimLine(str(i + 1), p, qty, line_gross(p.price, qty)))
    return tuple(out)


class ScriptedTill:
    """One register whose receipts the script writes; records like a :class:`Till`."""

    def __init__(self, client: NativeClient, recorder: Recorder, register_id: str, *, shift: str,
                 commit_retry_s: float = 60.0) -> None:
        self.client, self.rec, self.register_id, self.shift = client, recorder, register_id, shift
        self.commit_retry_s = commit_retry_s
        self._numbers = itertools.count(1)
        self.answers: dict[str, dict[str, Any]] = {}  # receipt identity -> last calculate answer
        self.sales: dict[str, dict[str, Any]] = {}  # receipt identity -> sale body sent

    def receipt(self, items: tuple[SimLine, ...], customer: str | None = None, *,
                redeem_max: bool = False) -> TillReceipt:
        number = str(next(self._numbers))
        return TillReceipt(register_id=self.register_id, shift=self.shift, receipt_number=number,
                           lines=items, occurred_at=datetime.now(MSK).isoformat(timespec="seconds"),
                           customer=parse_customer(customer) if customer else None,
                           redeem_max=redeem_max, document_id=f"{self.register_id}-{self.shift}-{number}")

    async def calculate(self, receipt: TillReceipt) -> Applied:
        self.rec.receipts += 1
        try:
            reply = await self.client.post("calculate", receipt.calc_body(), timeout_s=5.0)
        except TransportError as exc:
            self.rec.error(str(exc))
            return receipt.full_price()
        if reply.status != 200:
            self.rec.error(f"calculate {receipt.identity}: HTTP {reply.status} {reply.error_text()}")
            return receipt.full_price()
        self.rec.calc_ms.append(reply.elapsed_ms)
        self.answers[receipt.identity] = reply.data
        try:
            applied = apply_answer(receipt, reply.data)
        except AnswerError as exc:
            self.rec.error(f"calculate {receipt.identity}: {exc}")
            return receipt.full_price()
        self.rec.offline_answers += applied.offline
        return applied

    async def commit(self, kind: str, endpoint: str, identity: str, body: dict[str, Any]) -> Ack | None:
        try:
            done = await self.client.commit(endpoint, body, timeout_s=5.0, retry_for_s=self.commit_retry_s)
        except (TransportError, RetriableStatus) as exc:
            self.rec.unacknowledged += 1
            self.rec.error(f"{kind} {identity}: not acknowledged: {exc}")
            return None
        data = done.answer.data
        if done.answer.status != 200 or not isinstance(data, dict) or "key" not in data:
            self.rec.unacknowledged += 1
            self.rec.error(f"{kind} {identity}: HTTP {done.answer.status} {done.answer.error_text()}")
            return None
        ack = Ack(kind, identity, self.register_id, str(data["key"]), bool(data.get("duplicate")),
                  done.attempts, data)
        self.rec.acks.append(ack)
        return ack

    async def sell(self, receipt: TillReceipt) -> tuple[Applied, Ack | None]:
        """Calculate, apply, commit; the applied answer and the acknowledgement."""
        applied = await self.calculate(receipt)
        body = receipt.sale_body(applied)
        self.sales[receipt.identity] = body
        return applied, await self.commit("sale", "sales", receipt.identity, body)

    async def resend(self, receipt: TillReceipt) -> Ack | None:
        """Send an already acknowledged sale again (a till that lost the answer)."""
        return await self.commit("sale", "sales", receipt.identity, self.sales[receipt.identity])

    async def refund(self, receipt: TillReceipt, line_qty: dict[str, int] | None, n: int = 1) -> Ack | None:
        refund_id = f"{receipt.identity}/r{n}"
        body = receipt.refund_body(refund_id, line_qty, datetime.now(MSK).isoformat(timespec="seconds"))
        return await self.commit("refund", "refunds", refund_id, body)


@contextlib.asynccontextmanager
async def native_client(gateway_url: str, api_key: str) -> Any:
    """A :class:`NativeClient` over its own session, for scripted tills."""
    async with aiohttp.ClientSession() as session:
        yield NativeClient(session, gateway_url, api_key)
