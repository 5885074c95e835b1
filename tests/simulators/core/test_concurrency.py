"""Acceptance: concurrent tills against one core over real gRPC, on SQLite and PostgreSQL.

- Double spend: N tills (one channel each) commit at once, each redeeming the customer's
  whole balance under its own idempotency key. Exactly one sale succeeds, every other is
  INSUFFICIENT_POINTS, and the balance never goes negative.
- Duplicate delivery: N copies of one receipt (same key) at once apply it exactly once.

The clients retry ABORTED / UNAVAILABLE with the same key, as §2.5 prescribes for a gateway.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc
from tests.simulators.core.acceptance import DEADLINE_S, Core, error_info, line, phone_ref, running

N = 16
RETRIABLE = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def commit_with_retry(stub: pb_grpc.LoyaltyCoreServiceStub,
                            req: pb.CommitRequest) -> pb.CommitResponse | str:
    """The result, or the ErrorInfo reason of a final failure."""
    for attempt in range(6):
        try:
            result: pb.CommitResponse = await stub.Commit(req, timeout=DEADLINE_S)
            return result
        except grpc.aio.AioRpcError as err:
            if err.code() in RETRIABLE and attempt < 5:
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            info = error_info(err)
            return f"{err.code().name}:{info.reason if info else err.details()}"
    raise AssertionError("unreachable")


async def tills(core: Core, requests: list[pb.CommitRequest]) -> list[pb.CommitResponse | str]:
    channels = [grpc.aio.insecure_channel(core.address) for _ in requests]
    try:
        stubs = [pb_grpc.LoyaltyCoreServiceStub(ch) for ch in channels]
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), DEADLINE_S) for ch in channels))
        return await asyncio.gather(*(commit_with_retry(s, r) for s, r in zip(stubs, requests, strict=True)))
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))


async def test_concurrent_double_spend(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cust = await core.register()  # welcome 300
        cid = cust.customer_id
        lines = [line("L1", 500_000)]  # cap 10 % = 500 points: the balance is the limit
        requests = [
            pb.CommitRequest(
                idempotency_key=f"DS-{i}",
                draft=core.draft(await core.strong(cid), lines, redeem=300, number=f"N{i}"),
            )
            for i in range(N)
        ]
        results = await tills(core, requests)

        ok = [r for r in results if isinstance(r, pb.CommitResponse)]
        failed = [r for r in results if isinstance(r, str)]
        assert len(ok) == 1, results
        assert failed == ["FAILED_PRECONDITION:INSUFFICIENT_POINTS"] * (N - 1)
        assert ok[0].calculation.redeemed_ordinary + ok[0].calculation.redeemed_certificate == 300
        assert ok[0].balance == 141  # 300 - 300 + ⌊470 000 × 3 %⌋ / 100
        state = await core.customer(cid)
        assert (state.balance, state.debt, state.held_points) == (141, 0, 0)
        report = await core.report()
        assert report.receipts == 1
        assert report.points_redeemed == 300


async def test_concurrent_duplicates_apply_once(db_url: str) -> None:
    async with running("seed002", db_url) as core:
        cust = await core.register()
        req = pb.CommitRequest(
            idempotency_key="DUP-1", draft=core.draft(phone_ref(cust), [line("L1", 100_000)], number="N-DUP")
        )
        results = await tills(core, [req] * N)
        assert all(isinstance(r, pb.CommitResponse) for r in results), results
        commits = [r for r in results if isinstance(r, pb.CommitResponse)]
        assert len({r.operation_id for r in commits}) == 1
        assert sum(not r.replayed for r in commits) == 1
        assert await core.balance(cust.customer_id) == 300 + 30
        assert (await core.report()).receipts == 1
