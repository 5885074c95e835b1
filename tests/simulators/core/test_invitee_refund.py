"""Acceptance: a full refund of an invitee's last purchase takes them off the inviter's
``effective_invited`` (loyalty-rules.md §1, §2.3), like a cancel does.

The counter is observed through the tier: a program whose tiers are reached by ``min_invited``
with ``tier_demotion`` on, so the inviter's tier follows the counter both ways.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.rules.program import Tier
from tests.simulators.core.acceptance import Core, load, phone_ref, running

TIERS = (
    Tier(name="base", rate_bp=300, cap_bp=1_000, min_spent=0),
    Tier(name="one", rate_bp=500, cap_bp=1_500, min_invited=1),
    Tier(name="two", rate_bp=700, cap_bp=2_000, min_invited=2),
)


def program() -> object:
    return dataclasses.replace(load("seed002"), tiers=TIERS, tier_demotion=True)


async def tier(core: Core, cust: pb.Customer) -> str:
    return (await core.customer(cust.customer_id)).tier


async def test_full_refund_of_last_purchase_uncounts_invitee(tmp_path: Path) -> None:
    async with running(program(), f"sqlite:///{tmp_path / 'core.db'}") as core:
        inviter = await core.register()
        friend = await core.register(referrer=inviter)
        first = await core.buy(phone_ref(friend), 10_000)
        assert await tier(core, inviter) == "one"
        second = await core.buy(phone_ref(friend), 10_000, 10_000)
        await core.refund(first.operation_id, full=True)
        assert await tier(core, inviter) == "one"  # the friend still has a purchase
        await core.refund(second.operation_id, lines={"L1": 1})
        assert await tier(core, inviter) == "one"
        await core.refund(second.operation_id, full=True)  # closes the last purchase
        assert await tier(core, inviter) == "base"
        again = await core.buy(phone_ref(friend), 10_000)  # a first purchase again: counted once
        assert await tier(core, inviter) == "one"
        await core.cancel(again.operation_id)  # the same rule for a cancel
        assert await tier(core, inviter) == "base"
        await core.buy(phone_ref(friend), 10_000)
        other = await core.register(referrer=inviter)
        await core.buy(phone_ref(other), 10_000)
        assert await tier(core, inviter) == "two"


async def test_cancel_of_first_purchase_keeps_invitee_with_another(tmp_path: Path) -> None:
    async with running(program(), f"sqlite:///{tmp_path / 'core.db'}") as core:
        inviter = await core.register()
        friend = await core.register(referrer=inviter)
        first = await core.buy(phone_ref(friend), 10_000)
        await core.buy(phone_ref(friend), 10_000)
        await core.cancel(first.operation_id)
        assert await tier(core, inviter) == "one"  # the friend still bought once
