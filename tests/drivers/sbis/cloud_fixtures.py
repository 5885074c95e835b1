"""Shared test fixtures of the SBIS driver tests: the fake cloud with one register and fast options."""

from __future__ import annotations

import time
from typing import Any

from drivers.sbis.config import Config
from simulators.registers.sbis.cloud import FakeSbis, receipt

INN, REG, FN = "7701234567", "0006543210012345", "7380440700112233"
BASE = int(time.time()) - 6 * 3600  # raw dateTime of document 1 (UTC frame in these tests)


def fast_config(url: str, **changes: Any) -> Config:
    """Options for tests: the fake cloud at ``url``, UTC documents, intervals of a few ms."""
    base: dict[str, Any] = dict(
        auth="token",
        app_client_id="app-id",
        app_secret="app-secret",
        secret_key="app-key",
        auth_url=url,
        api_url=url,
        inn=INN,
        doc_time_zone="UTC",
        interval_s=0.02,
        drives_refresh_s=3600.0,
        backfill_s=2 * 86_400.0,
        gap_recheck_s=0.05,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        request_timeout_s=5.0,
        connect_timeout_s=2.0,
        fetch_timeout_s=10.0,
        max_rps=1000.0,
        retry_after_max_s=0.2,
    )
    base.update(changes)
    return Config.model_validate(base)


def cloud(**kw: Any) -> FakeSbis:
    sbis = FakeSbis(inn=INN, **kw)
    sbis.add_register(REG, FN, BASE - 86_400)
    return sbis


def sale(
    fd: int,
    *,
    phone: str = "",
    items: list[tuple[str, int, int]] | None = None,
    fn: str = FN,
    at: int | None = None,
    op: int = 1,
) -> dict[str, Any]:
    return receipt(
        fn=fn,
        fd=fd,
        reg_id=REG,
        at=BASE + fd * 60 if at is None else at,
        items=items or [("Кофе", 10_000 + fd, 1000)],
        op=op,
        phone=phone,
    )
