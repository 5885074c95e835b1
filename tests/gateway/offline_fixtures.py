"""Shared helpers for the offline cache / offline policy tests: a program, a balance snapshot, a
fake core serving both, and an injectable wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.core_client import CoreClient, CoreTarget
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.offline_cache import OfflineCache
from gateway.rules.program import Program, Tier, program_to_json
from tests.gateway.calc_fakes import FakeCore, start_core

PROGRAM = Program(
    id="test",
    tiers=(Tier("base", rate_bp=500, cap_bp=3000), Tier("gold", rate_bp=1000, cap_bp=5000, min_spent=10**7)),
    redeem_with=("app_code", "phone_otp", "card", "customer_id"),
)
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+79123456789"


def entries() -> list[pb.BalanceEntry]:
    return [
        pb.BalanceEntry(
            customer_id="c1",
            phone=PHONE,
            cards=["1234 5678"],
            display_name="Анна К.",
            tier="base",
            ordinary_points=500,
            certificate_points=300,
        ),
        pb.BalanceEntry(customer_id="c2", phone="+79997654321", tier="gold", ordinary_points=1000),
        pb.BalanceEntry(
            customer_id="c3", phone="+79990001122", tier="base", ordinary_points=50, blocked=True
        ),
        pb.BalanceEntry(
            customer_id="c4", cards=["777"], tier="base", ordinary_points=0, certificate_points=900
        ),
    ]


async def serve_fake_core() -> AsyncIterator[tuple[FakeCore, CoreClient]]:
    """A fake core with :data:`PROGRAM` and :func:`entries`, and a started client (a fixture body)."""
    fake = FakeCore()
    fake.program = pb.GetProgramResponse(program_id="test", version="v1",
                                         config_json=program_to_json(PROGRAM))
    fake.balances = entries()
    server, port = await start_core(fake)
    client = CoreClient(CoreTarget(f"127.0.0.1:{port}"))
    await client.start()
    yield fake, client
    await client.close()
    await server.stop(None)


class Wall:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def loaded_cache(tmp_path: Path, client: CoreClient, wall: Wall | None = None) -> OfflineCache:
    cache = OfflineCache(tmp_path, client, page_size=3, wall=wall or Wall())
    assert await cache.refresh()
    return cache
