"""Acceptance: the report's churn per month (loyalty-rules.md §4), through gRPC.

Months are calendar months of the program time zone (seed002: Europe/Moscow); a customer
churns in M when their last purchase before the end of M plus 90 days falls in M; the base is
who bought in the 90 days before M. Cancelled sales are no purchases.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from tests.simulators.core.acceptance import DEADLINE_S, Clock, Core, msk, phone_ref, running, ts


async def buyer(core: Core, *days: tuple[int, int, int, int]) -> pb.Customer:
    cust = await core.register(at=msk(2025, 5, 1))
    for y, m, d, h in days:
        await core.buy(phone_ref(cust), 10_000, at=msk(y, m, d, h))
    return cust


async def months(
    core: Core, start: Timestamp | None = None, end: Timestamp | None = None
) -> list[tuple[str, int, int, int]]:
    req = pb.GetReportRequest(**{"from": start or ts(msk(2025, 9, 1))}, to=end or ts(msk(2025, 12, 1)))
    report = await core.stub.GetReport(req, timeout=DEADLINE_S)
    return [(m.month, m.churned, m.base, m.churn_bp) for m in report.months]


async def test_churn_per_month_in_program_time_zone(tmp_path: Path) -> None:
    clock = Clock(msk(2025, 12, 1))
    async with running("seed002", f"sqlite:///{tmp_path / 'core.db'}", clock) as core:
        # 3 June 01:00 Moscow is 2 June in UTC: + 90 days = 1 September 01:00 Moscow (31 August UTC)
        await buyer(core, (2025, 6, 3, 1))
        await buyer(core, (2025, 6, 10, 12), (2025, 8, 1, 12))  # lapses 30 October
        await buyer(core, (2025, 7, 15, 12), (2025, 10, 20, 12))  # lapses 13 October, back on the 20th
        await buyer(core, (2025, 11, 10, 12))  # new in November
        gone = await core.register(at=msk(2025, 5, 1))
        sale = await core.buy(phone_ref(gone), 10_000, at=msk(2025, 6, 5, 12))
        await core.cancel(sale.operation_id, at=msk(2025, 6, 5, 13))  # no purchase at all
        assert await months(core) == [
            ("2025-09", 1, 3, 3_333),  # base bought in [3 June, 1 September)
            ("2025-10", 1, 2, 5_000),  # base [3 July, 1 October); the return on the 20th undoes a lapse
            ("2025-11", 0, 1, 0),  # base [3 August, 1 November)
        ]
        # a lapse counts only once it has happened: on 15 October the 30 October one has not
        clock.set(msk(2025, 10, 15))
        assert await months(core, end=ts(msk(2026, 1, 1))) == [("2025-09", 1, 3, 3_333), ("2025-10", 0, 2, 0)]
        # months start within [from, to), and not before the first purchase
        clock.set(msk(2025, 12, 1))
        got = await months(core, start=ts(msk(2025, 9, 1, 0, 1)), end=ts(msk(2025, 11, 1)))
        assert got == [("2025-10", 1, 2, 5_000)]
        got = await months(core, start=ts(msk(2000, 1, 1)), end=ts(msk(2025, 7, 1)))
        assert got == [("2025-06", 0, 0, 0)]
