"""Offline policy (rules engine on the cached snapshot, per-customer, per-shift-day redemption limit
across registers that survives a restart). The cache itself: tests/gateway/test_offline_cache.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.core_client import CoreClient
from gateway.errors import BadInput
from gateway.offline import OfflineCache, OfflinePolicy, shift_day
from gateway.receipt import CustomerId, IdKind, Line, Receipt
from tests.gateway.calc_fakes import FakeCore
from tests.gateway.offline_fixtures import (
    AT,
    PHONE,
    PROGRAM,
    loaded_cache,
    serve_fake_core,
)


def receipt(
    customer: CustomerId | None = None,
    *,
    redeem: int = 0,
    redeem_max: bool = False,
    number: str = "1",
    shift: str = "s1",
    amount: int = 100_000,
    register: str = "r1",
    at: datetime = AT,
) -> Receipt:
    return Receipt(
        register_id=register,
        receipt_number=number,
        shift=shift,
        occurred_at=at,
        customer=customer,
        redeem_points=redeem,
        redeem_max=redeem_max,
        lines=(
            Line("1", "sku1", "Кофе", amount, 1000, amount),
            Line("2", "sku2", "Чай", 20_000, 1000, 20_000),
        ),
    )


CARD = CustomerId(IdKind.CARD, "12345678")


@pytest.fixture
async def fake_core() -> AsyncIterator[tuple[FakeCore, CoreClient]]:
    async for served in serve_fake_core():
        yield served


# ---------------------------------------------------------------- policy


async def policy_for(tmp_path: Path, client: CoreClient, limit: int = 0) -> OfflinePolicy:
    return OfflinePolicy(await loaded_cache(tmp_path, client), redeem_limit_points=limit)


async def test_known_customer_accrues_provisionally(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client)
    r = receipt(CustomerId(IdKind.PHONE, "8 912 345 67 89"))
    result = policy.calculate(r)
    assert result.offline and result.customer_found and result.customer_id == "c1"
    assert result.balance is None
    assert result.points_to_accrue == 60  # 5 % of 1 200,00
    assert result.redeemed_points == 0 and result.payable == 120_000
    assert "предварительный" in result.message and result.display_name == "Анна К."
    gold = policy.calculate(receipt(CustomerId(IdKind.CUSTOMER_ID, "c2")))
    assert gold.points_to_accrue == 120 and gold.tier == "gold"


async def test_redemption_refused_by_default(tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client)
    result = policy.calculate(receipt(CARD, redeem=10))
    assert result.redeemed_points == 0 and result.total_discount == 0
    assert result.rejection == "REDEMPTION_NOT_PERMITTED" and result.max_points == 0
    assert result.limited_by == "offline_limit" and "недоступно" in result.message
    assert result.points_to_accrue == 60
    as_much = policy.calculate(receipt(CARD, redeem_max=True))
    assert as_much.redeemed_points == 0 and as_much.rejection == "REDEMPTION_NOT_PERMITTED"


async def test_offline_limit_per_customer_per_shift_survives_restart(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client, limit=100)
    first = policy.calculate(receipt(CARD, redeem=60, number="1"))
    assert first.redeemed_points == 60 and first.total_discount == 6000 and first.rejection == ""
    again = policy.calculate(receipt(CARD, redeem=60, number="1"))  # recalculation
    assert again.redeemed_points == 60

    await policy.ledger.drain()  # written off the event loop: as a stopping daemon does
    restarted = OfflinePolicy(OfflineCache(tmp_path), redeem_limit_points=100)
    restarted.cache.load()
    over = restarted.calculate(receipt(CARD, redeem=60, number="2"))
    assert over.redeemed_points == 0 and over.rejection == "REDEMPTION_CAP_EXCEEDED"
    assert over.max_points == 40 and "не более 40" in over.message
    rest = restarted.calculate(receipt(CARD, redeem_max=True, number="2"))
    assert rest.redeemed_points == 40 and rest.rejection == ""
    none_left = restarted.calculate(receipt(CARD, redeem=1, number="3"))
    assert none_left.redeemed_points == 0 and none_left.rejection == "REDEMPTION_NOT_PERMITTED"
    # the register's own shift number does not open a new limit: the gateway's shift day does
    other_shift = restarted.calculate(receipt(CARD, redeem=60, number="1", shift="s2"))
    assert other_shift.redeemed_points == 0 and other_shift.rejection == "REDEMPTION_NOT_PERMITTED"
    other_customer = restarted.calculate(
        receipt(CustomerId(IdKind.CUSTOMER_ID, "c2"), redeem=100, number="4")
    )
    assert other_customer.redeemed_points == 100
    # recalculating receipt 2 without redemption gives its 40 points back to the day
    restarted.calculate(receipt(CARD, number="2"))
    assert restarted.calculate(receipt(CARD, redeem=40, number="5")).redeemed_points == 40


async def test_offline_limit_is_shared_by_registers_per_local_day(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]
) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client, limit=100)
    assert shift_day(PROGRAM, receipt(CARD)) == "2026-03-01"  # 15:00 in Moscow, the program's zone
    till1 = policy.calculate(receipt(CARD, redeem=70, register="r1", shift="41", number="1"))
    assert till1.redeemed_points == 70
    # another till, its own shift number and the same receipt number: only what is left
    till2 = policy.calculate(receipt(CARD, redeem=70, register="r2", shift="7", number="1"))
    assert till2.redeemed_points == 0 and till2.rejection == "REDEMPTION_CAP_EXCEEDED"
    assert till2.max_points == 30 and "не более 30" in till2.message
    rest = policy.calculate(receipt(CARD, redeem_max=True, register="r2", shift="7", number="1"))
    assert rest.redeemed_points == 30
    # 23:59 Moscow time is still the same day (UTC date alone would say the same, 20:59 UTC) ...
    late = AT.replace(hour=20, minute=59)
    assert policy.calculate(receipt(CARD, redeem=1, register="r3", number="9", at=late)).redeemed_points == 0
    # ... 00:00 Moscow time is the next local day although the UTC date is still 1 March
    next_day = AT.replace(hour=21)
    assert shift_day(PROGRAM, receipt(CARD, at=next_day)) == "2026-03-02"
    fresh = policy.calculate(receipt(CARD, redeem=100, register="r2", shift="7", number="2", at=next_day))
    assert fresh.redeemed_points == 100 and fresh.rejection == ""

    await policy.ledger.drain()
    restarted = OfflinePolicy(OfflineCache(tmp_path), redeem_limit_points=100)
    restarted.cache.load()
    for at in (AT, next_day, next_day + timedelta(hours=20)):  # both days used up after a restart
        spent = restarted.calculate(receipt(CARD, redeem=1, register="r4", number="1", at=at))
        assert spent.redeemed_points == 0 and spent.rejection == "REDEMPTION_NOT_PERMITTED"
    third_day = restarted.calculate(
        receipt(CARD, redeem=100, register="r4", number="1", at=AT + timedelta(days=2))
    )
    assert third_day.redeemed_points == 100


async def test_old_per_register_ledger_is_dropped_with_a_warning(
    tmp_path: Path, fake_core: tuple[FakeCore, CoreClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = fake_core
    old = {"v": 1, "shifts": {"r1/s1": {"at": time.time(), "grants": {"c1": {"r1:s1:1": 100}}}}}
    (tmp_path / "offline_grants.json").write_text(json.dumps(old))
    with caplog.at_level("WARNING", logger="posgw.offline"):
        policy = await policy_for(tmp_path, client, limit=100)
    assert "old per-register format" in caplog.text
    assert policy.calculate(receipt(CARD, redeem=100, number="2")).redeemed_points == 100
    await policy.ledger.drain()
    stored = json.loads((tmp_path / "offline_grants.json").read_text())
    assert "shifts" not in stored and stored["days"]["2026-03-01"]["grants"]["c1"] == {"r1:s1:2": 100}


async def test_rules_still_apply_offline(tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client, limit=10_000)
    weak = policy.calculate(receipt(CustomerId(IdKind.PHONE, PHONE), redeem=10))
    assert weak.redeemed_points == 0 and weak.rejection == "REDEMPTION_NOT_PERMITTED"
    otp = policy.calculate(receipt(CustomerId(IdKind.PHONE, PHONE, otp="1234"), redeem=10))
    assert otp.redeemed_points == 0  # an SMS code cannot be checked offline
    too_much = policy.calculate(receipt(CARD, redeem=400))  # cap 30 % of 1 200 = 360
    assert too_much.redeemed_points == 0 and too_much.rejection == "REDEMPTION_CAP_EXCEEDED"
    assert too_much.max_points == 360
    beyond = policy.calculate(receipt(CARD, redeem=600))
    assert beyond.rejection == "INSUFFICIENT_POINTS"
    certs_only = policy.calculate(receipt(CustomerId(IdKind.CARD, "777"), redeem_max=True))
    assert certs_only.redeemed_points == 0 and certs_only.max_points == 0  # certificates: online only


async def test_no_loyalty_cases(tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client, limit=100)
    app = policy.calculate(receipt(CustomerId(IdKind.APP_CODE, "123456"), redeem=10))
    assert not app.customer_found and app.offline and app.total_discount == 0 and app.points_to_accrue == 0
    assert "приложения" in app.message
    unknown = policy.calculate(receipt(CustomerId(IdKind.PHONE, "+79001112233")))
    assert not unknown.customer_found and unknown.points_to_accrue == 0 and unknown.payable == 120_000
    blocked = policy.calculate(receipt(CustomerId(IdKind.CUSTOMER_ID, "c3")))
    assert not blocked.customer_found and blocked.rejection == "CUSTOMER_BLOCKED"
    anonymous = policy.calculate(receipt(None))
    assert not anonymous.customer_found and anonymous.offline
    empty = OfflinePolicy(OfflineCache(tmp_path / "empty"))
    no_program = empty.calculate(receipt(CARD))
    assert not no_program.customer_found and "нет сохранённых правил" in no_program.message


async def test_invalid_receipt_is_bad_input(tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client)
    bad = Receipt(
        register_id="r1",
        receipt_number="1",
        occurred_at=AT,
        customer=CARD,
        lines=(Line("1", "s", "x", 100, 1000, 100, min_unit_price=500),),
    )
    with pytest.raises(BadInput) as info:
        policy.calculate(bad)
    assert "min_unit_price" in info.value.field


async def test_identify_offline_and_speed(tmp_path: Path, fake_core: tuple[FakeCore, CoreClient]) -> None:
    _, client = fake_core
    policy = await policy_for(tmp_path, client)
    info = policy.identify(CustomerId(IdKind.PHONE, "89123456789"))
    assert info is not None and info.customer_id == "c1" and info.offline and info.balance is None
    assert policy.identify(CustomerId(IdKind.APP_CODE, "123456")) is None
    r = receipt(CustomerId(IdKind.PHONE, PHONE))
    t0 = time.perf_counter()
    for _ in range(200):
        policy.calculate(r)
    per_call = (time.perf_counter() - t0) / 200
    print(f"offline calc: {per_call * 1e6:.0f} us per receipt")
    assert per_call < 0.005
