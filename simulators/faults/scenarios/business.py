"""Faults of meaning rather than of machinery: clocks, shared balances, copies and order, changed minds.

- ``clock-skew``: tills stamping receipts hours off (±5 h, ±26 h); ``gateway-clock-jump`` is NOT RUN;
- ``two-tills-one-balance``: two tills calculate max redemption for one customer at once, both sell;
- ``offline-overspend``: the core down, one customer redeems max again and again past the offline cap;
- ``refund-before-sale``: Poster's removal webhook before the app's close of the order;
- ``webhook-twice``: the same Poster webhook twice 70 ms apart and again later (after a restart);
- ``customer-changed``: calculate for one customer, sell naming another with the first one's token;
- ``till-crash-hold-lapse``: a till calculates (a hold is taken) and dies before the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from simulators.faults.catalogue import Context, Outcome, scenario
from simulators.faults.scenarios.common import PHONES, balance, delivery, operation_rows, scenario_stack, till
from simulators.fleet import lines
from simulators.registers.native.report import Ack
from simulators.registers.poster.account import PosterAccount, Switches
from simulators.soak import POSTER_ACCOUNT, POSTER_SECRET, POSTER_TOKEN

BIG = (("4600030", 5_000), ("4600001", 2_000))  # its redemption cap exceeds a welcome balance


def _basket() -> Any:
    return lines(*BIG)


@scenario("clock-skew", "till clocks skewed by hours: receipts stamped -26 h, -5 h, +5 h, +26 h")
async def clock_skew(ctx: Context) -> Outcome:
    per: dict[str, str] = {}
    async with scenario_stack(ctx.workdir) as stack, till(stack) as t:
        for hours in (-26, -5, 5, 26):
            receipt = t.receipt(lines(("4600001", 1_000)), PHONES[0])
            stamp = (datetime.now(UTC) + timedelta(hours=hours)).astimezone().isoformat(timespec="seconds")
            receipt = dataclasses.replace(receipt, occurred_at=stamp)
            applied = await t.calculate(receipt)
            reply = await t.client.post("sales", receipt.sale_body(applied), timeout_s=5)
            if reply.status == 200 and isinstance(reply.data, dict):
                t.rec.acks.append(
                    Ack("sale", receipt.identity, t.register_id, str(reply.data["key"]), False, 1, {})
                )
            per[f"{hours:+d}h"] = f"HTTP {reply.status}" + (
                "" if reply.status == 200 else f" {reply.error_text()[:40]}"
            )
        check = await delivery(stack, t.rec.acks)
    figures: dict[str, Any] = {
        "answers": per,
        **{k: check[k] for k in ("acked", "applied", "lost", "doubled", "queued", "queue_reasons")},
    }
    figures["gateway_clock_jump"] = "NOT RUN (see gateway-clock-jump)"
    ok = check["ok"] and check["queued"] == 0
    return Outcome.judge(
        ok,
        figures,
        note="a refusal at the till (4xx) is acceptable; an acknowledged receipt "
        "that the core refuses (queued) or loses is not",
        why_not="a skewed receipt was acknowledged and then not applied",
    )


@scenario("gateway-clock-jump", "the gateway's wall clock jumps (hours forward / back) while running")
async def gateway_clock_jump(ctx: Context) -> Outcome:
    return Outcome.not_run(
        "needs the gateway process on its own wall clock: libfaketime (LD_PRELOAD, not "
        "installed here) or a VM; a time namespace (unshare --time) offsets only the monotonic "
        "and boot clocks, and setting the host clock would move every process on this "
        "shared machine"
    )


@scenario("two-tills-one-balance", "two tills calculate max redemption for one customer at once, both sell")
async def two_tills(ctx: Context) -> Outcome:
    async with (
        scenario_stack(ctx.workdir, hold_ttl_s=60) as stack,
        till(stack, "faults-a") as a,
        till(stack, "faults-b") as b,
    ):
        before = await balance(stack, PHONES[2])
        ra = a.receipt(_basket(), PHONES[2], redeem_max=True)
        rb = b.receipt(_basket(), PHONES[2], redeem_max=True)
        pa, pb = await asyncio.gather(a.calculate(ra), b.calculate(rb))
        ka, kb = await asyncio.gather(
            a.commit("sale", "sales", ra.identity, ra.sale_body(pa)),
            b.commit("sale", "sales", rb.identity, rb.sale_body(pb)),
        )
        check = await delivery(stack, a.rec.acks + b.rec.acks)
        after = await balance(stack, PHONES[2])
        at_core = sum(
            int(r["redeemed"])
            for k in (ka, kb)
            if k is not None
            for r in operation_rows(stack.core_db, k.key)
        )
    figures = {
        "balance_before": before,
        "calc_redeem_a": pa.redeemed_points,
        "calc_redeem_b": pb.redeemed_points,
        "redeemed_at_core": at_core,
        "balance_after": after,
        **{k: check[k] for k in ("acked", "lost", "doubled", "queued", "queue_reasons")},
    }
    ok = (
        after >= 0 and at_core <= before and pa.redeemed_points + pb.redeemed_points <= before and check["ok"]
    )
    return Outcome.judge(
        ok, figures, why_not="one balance was spent twice (the calculations together exceed it)"
    )


@scenario("offline-overspend", "core down; one customer redeems max on 6 receipts past the offline cap")
async def offline_overspend(ctx: Context) -> Outcome:
    cap = 50
    async with (
        scenario_stack(ctx.workdir, offline_redeem_limit=cap, refresh_s=0.5) as stack,
        till(stack) as t,
    ):
        before = await balance(stack, PHONES[3])
        await asyncio.sleep(2.0)  # the balance snapshot reaches the gateway
        await stack.core_outage()
        offered = []
        for _ in range(6):
            receipt = t.receipt(_basket(), PHONES[3], redeem_max=True)
            applied = await t.calculate(receipt)
            offered.append((applied.redeemed_points, applied.offline))
            await t.commit("sale", "sales", receipt.identity, receipt.sale_body(applied))
        await stack.core_back()
        check = await delivery(stack, t.rec.acks)
        after = await balance(stack, PHONES[3])
    offline_sum = sum(p for p, off in offered if off)
    figures = {
        "cap_points": cap,
        "balance_before": before,
        "offered": [p for p, _ in offered],
        "offline_answers": sum(off for _, off in offered),
        "offline_redeemed_sum": offline_sum,
        "balance_after": after,
        **{k: check[k] for k in ("acked", "lost", "doubled", "queued", "queue_reasons")},
    }
    ok = offline_sum <= cap and after >= 0 and check["ok"]
    return Outcome.judge(
        ok,
        figures,
        why_not=f"offline redemption {offline_sum} past the cap {cap}, a negative balance, or a loss",
    )


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0.2)


def _poster(stack: Any, **switches: bool) -> PosterAccount:
    return PosterAccount(
        stack.gateway_url,
        secret=POSTER_SECRET,
        token=POSTER_TOKEN,
        account=POSTER_ACCOUNT,
        tablet=7,
        switches=Switches(**switches),
        sleep=_no_wait,
    )


POSTER_ITEMS = [(12, Decimal("190"), Decimal(2)), (40, Decimal("85.5"), Decimal(1))]


def _removal_key(tx: int) -> str:
    return f"poster:{POSTER_ACCOUNT}:tx:{tx}:removed"


@scenario("refund-before-sale", "Poster's removal webhook arrives before the app's close of its order (x5)")
async def refund_before_sale(ctx: Context) -> Outcome:
    async with scenario_stack(ctx.workdir) as stack, aiohttp.ClientSession() as session:
        acc = _poster(stack)
        acks: list[Ack] = []
        removal_statuses = []
        for n in range(5):
            tx = 71000 + n
            early = await acc.send_webhook(session, tx, "removed")  # before the order is closed or synced
            removal_statuses.append(early.statuses[-1] if early.statuses else 0)
            done = await acc.order(session, POSTER_ITEMS, phone=PHONES[0], transaction_id=tx)
            key = f"poster:{POSTER_ACCOUNT}:7:order:{done.order_id}"
            if done.statuses and done.statuses[0] == 200:
                acks.append(Ack("sale", key, "poster", key, False, 1, {}))
            if early.delivered:
                acks.append(Ack("refund", _removal_key(tx), "poster", _removal_key(tx), False, 1, {}))
        await asyncio.sleep(3.0)
        check = await delivery(stack, acks, drain_s=60)
        applied = stack.applied()
    removals = sum(_removal_key(71000 + n) in applied.keys("refund") for n in range(5))
    figures = {
        "orders": 5,
        "removal_answers": removal_statuses,
        "removals_applied": removals,
        **{k: check[k] for k in ("lost", "doubled", "queued", "pending", "queue_reasons")},
    }
    ok = removals == 5 and check["queued"] == 0 and check["ok"]
    return Outcome.judge(
        ok, figures, why_not="a refund that arrived before its sale was not applied once the sale arrived"
    )


@scenario("webhook-twice", "the same Poster webhook twice within 70 ms, and again later (after a restart)")
async def webhook_twice(ctx: Context) -> Outcome:
    async with scenario_stack(ctx.workdir) as stack, aiohttp.ClientSession() as session:
        acc = _poster(stack)
        tx = 72001
        done = await acc.order(session, POSTER_ITEMS, phone=PHONES[1], transaction_id=tx)
        await stack.wait_drained(30)

        async def later(delay: float) -> Any:
            await asyncio.sleep(delay)
            return await acc.send_webhook(session, tx, "removed")

        first, second = await asyncio.gather(later(0.0), later(0.07))
        await stack.wait_drained(30)
        await stack.restart_gateway()
        third = await acc.send_webhook(session, tx, "removed")
        key = f"poster:{POSTER_ACCOUNT}:7:order:{done.order_id}"
        acks = [
            Ack("sale", key, "poster", key, False, 1, {}),
            Ack("refund", _removal_key(tx), "poster", _removal_key(tx), False, 1, {}),
        ]
        check = await delivery(stack, acks)
        count = stack.applied().counts.get(("refund", _removal_key(tx)), 0)
    figures = {
        "statuses": [first.statuses, second.statuses, third.statuses],
        "core_count": count,
        **{k: check[k] for k in ("lost", "doubled", "queued")},
    }
    ok = count == 1 and check["ok"] and all(d.delivered for d in (first, second, third))
    return Outcome.judge(
        ok,
        figures,
        note="'an hour later' is a resend after delivery and a gateway restart with a "
        "fresh signature time; a real hour was not waited",
        why_not="the removal was applied other than once, or a resend was refused",
    )


@scenario(
    "customer-changed", "calculate with one customer (max redemption), sell naming another with that token"
)
async def customer_changed(ctx: Context) -> Outcome:
    async with scenario_stack(ctx.workdir, hold_ttl_s=60) as stack, till(stack) as t:
        a_before, b_before = await balance(stack, PHONES[0]), await balance(stack, PHONES[1])
        receipt = t.receipt(_basket(), PHONES[0], redeem_max=True)
        applied = await t.calculate(receipt)
        other = dataclasses.replace(receipt, customer={"phone": PHONES[1]})
        ack = await t.commit("sale", "sales", other.identity, other.sale_body(applied))
        check = await delivery(stack, t.rec.acks)
        rows = operation_rows(stack.core_db, ack.key) if ack else []
        a_after, b_after = await balance(stack, PHONES[0]), await balance(stack, PHONES[1])
        b_id = (await stack.admin.customer(PHONES[1])).customer_id
    row = rows[0] if rows else {}
    figures = {
        "calc_redeem_for_a": applied.redeemed_points,
        "a_before": a_before,
        "a_after": a_after,
        "b_before": b_before,
        "b_after": b_after,
        "sale_customer_is_b": str(row.get("customer_id")) == str(b_id),
        "redeemed_at_core": row.get("redeemed"),
        "accrued_at_core": row.get("accrued"),
        **{k: check[k] for k in ("lost", "doubled", "queued")},
    }
    ok = (
        a_after == a_before
        and figures["sale_customer_is_b"]
        and (row.get("redeemed") or 0) <= b_before
        and check["ok"]
    )
    return Outcome.judge(
        ok,
        figures,
        note="the sale carries the redemption the till applied, so the customer it names pays for it",
        why_not="the first customer's points were spent by another's sale, or the "
        "sale was not applied to the customer it names",
    )


@scenario(
    "till-crash-hold-lapse", "a till calculates (hold taken) and crashes before the commit; the hold lapses"
)
async def till_crash_hold(ctx: Context) -> Outcome:
    ttl = 3
    async with (
        scenario_stack(ctx.workdir, hold_ttl_s=ttl) as stack,
        till(stack, "faults-a") as a,
        till(stack, "faults-b") as b,
    ):
        first = await a.calculate(a.receipt(_basket(), PHONES[2], redeem_max=True))  # then the till dies
        during = await b.calculate(b.receipt(_basket(), PHONES[2], redeem_max=True))
        await asyncio.sleep(ttl + 1.0)
        from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb

        req = pb.RunJobsRequest()
        req.at.FromDatetime(datetime.now(UTC))
        began = time.monotonic()
        jobs = await stack.admin.stub.RunJobs(req, timeout=10)
        jobs_s = time.monotonic() - began
        after = await b.calculate(b.receipt(_basket(), PHONES[2], redeem_max=True))
        bal = await balance(stack, PHONES[2])
    figures = {
        "hold_ttl_s": ttl,
        "redeem_first_calc": first.redeemed_points,
        "hold_id": bool(first.hold_id),
        "redeem_while_held": during.redeemed_points,
        "holds_released_by_jobs": int(jobs.holds_released),
        "redeem_after_lapse": after.redeemed_points,
        "balance": bal,
        "jobs_s": round(jobs_s, 2),
    }
    ok = after.redeemed_points == first.redeemed_points and (
        during.redeemed_points < first.redeemed_points
        or first.redeemed_points + during.redeemed_points <= bal
    )
    return Outcome.judge(
        ok,
        figures,
        why_not="the held points were not available again after the hold lapsed, or the hold did not hold",
    )
