"""The demo's scripted trading day on a real stack (core, fault proxy, gateway, tills).

:func:`trading_day` starts a :class:`~simulators.stack.Stack` in a temp dir and plays, while
background tills keep selling: registrations with the welcome bonus, a 3-level referral
chain, purchases crossing a tier, a redemption with an app code, a per-line return, a
duplicate resend, a customer registered at the till seconds before a core outage of several
seconds (receipts keep flowing, answered offline; she is recognised offline: the gateway fetches
the customers the core changed every few seconds between its full snapshots), a graceful
gateway restart (SIGTERM) and a crash restart (SIGKILL). It waits for
the outbox to drain and compares every acknowledged document with what the core applied.

Returns a :class:`DemoResult`: the story (one line per step), balances per customer and the
figures ``posgw demo --json`` prints. Bounded: every wait has a timeout; the whole day takes
about 30-45 s on a laptop.

Other tills (issue 5): for each entry of :data:`VENDOR_TILLS` whose simulator package
(``simulators.registers.<name>``) is present, the gateway config enables that driver and the
demo runs one till of it (its ``run_tills(gateway_url, token, tills=1, receipts=...)``); its
acknowledgements join the exactly-once check. To add a vendor, add one entry.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.fleet import Fleet, ScriptedTill, lines, native_client
from simulators.registers.native import TillConfig
from simulators.registers.native.report import Recorder, percentile
from simulators.stack import Stack, StackOptions
from simulators.stack_check import check_delivery

# simulator package -> (driver section of the gateway config, token the till presents, config class)
VENDOR_TILLS: dict[str, tuple[str, str, str]] = {
    "evotor": ('pairing_tokens = ["demo-evotor-token"]\ncloud_user_token = "demo-evotor-cloud"',
               "demo-evotor-token", "EvotorConfig"),
    "modulkassa": ('pairing_tokens = ["demo-modulkassa-token"]', "demo-modulkassa-token", "ModulKassaConfig"),
}
OUTAGE_S = 5.0
PEOPLE = {  # phone -> name; Anna invites Boris, Boris invites Vera, Vera invites Gleb
    "+79161000001": "Анна Ковалёва",
    "+79161000002": "Борис Петров",
    "+79161000003": "Вера Смирнова",
    "+79161000004": "Глеб Орлов",
    "+79161000005": "Дмитрий Волков",
}
NEWCOMER = ("+79161000006", "Елена Соколова")  # registers at the till just before the outage
SNAPSHOT_S = 30.0  # the gateway's full offline snapshot interval here (a shop's is minutes)


@dataclass
class DemoResult:
    story: list[str] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def rub(kopecks: int) -> str:
    """``123456`` -> ``"1 234.56 ₽"`` (integer arithmetic, no floats)."""
    return f"{kopecks // 100:,}".replace(",", " ") + f".{kopecks % 100:02d} ₽"


def _vendors() -> list[str]:
    return [name for name in VENDOR_TILLS if importlib.util.find_spec(f"simulators.registers.{name}")]


def vendor_toml(names: list[str]) -> str:
    return "".join(f"\n[drivers.{n}]\nenabled = true\n{VENDOR_TILLS[n][0]}\n" for n in names)


async def _vendor_till(name: str, stack: Stack, phones: list[str], seed: int,
                       tell: Callable[[str], None]) -> list[Any]:
    """One till of a vendor simulator selling a few receipts; its acknowledgements."""
    _, token, config_class = VENDOR_TILLS[name]
    module = importlib.import_module(f"simulators.registers.{name}")
    config = getattr(module, config_class)(cancel_share=0.15)  # abandoned receipts release their holds
    report = await module.run_tills(stack.gateway_url, token, tills=1, receipts=8, seed=seed,
                                    customers=phones, config=config)
    tell(f"1 {name} till (driver {name}): {report.acknowledged} sales, {report.refunds} refunds, "
         f"{report.cancels} abandoned receipts acknowledged, {report.errors} errors")
    return [a for a in report.acks if a.key]


async def _in_offline_copy(stack: Stack, phone: str, timeout_s: float = 15.0) -> float | None:
    """Seconds until ``phone`` is in the gateway's offline snapshot file; None if not within ``timeout_s``."""
    path = stack.gateway_dir / "offline" / "balances.json"
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            customers = json.loads(path.read_text(encoding="utf-8"))["customers"]
        except (OSError, ValueError, KeyError):
            customers = []
        if any(c.get("phone") == phone for c in customers):
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    return None


async def trading_day(*, seed: int = 2, say: Callable[[str], None] = lambda _: None,
                      workdir: Path | None = None) -> DemoResult:
    """Play the day (see the module docstring); ``say`` hears each story line as it happens."""
    result = DemoResult()

    def tell(line: str) -> None:
        result.story.append(line)
        say(line)

    tmp = tempfile.TemporaryDirectory(prefix="posgw-demo-") if workdir is None else None
    where = Path(tmp.name) if tmp is not None else workdir
    assert where is not None
    began = time.monotonic()
    try:
        options = StackOptions(api_key="demo-till-key", offline_redeem_limit=200, refresh_s=SNAPSHOT_S,
                               hold_ttl_s=120, extra_toml=vendor_toml(_vendors()))
        async with Stack(where, options) as stack:
            tell(f"started core (seed002), fault proxy and gateway in {time.monotonic() - began:.1f} s "
                 f"(gateway {stack.gateway_url}, core {stack.core_address} "
                 f"behind proxy {stack.proxy.address})")
            await _play(stack, seed, result, tell)
    finally:
        if tmp is not None:
            tmp.cleanup()
    result.figures["elapsed_s"] = round(time.monotonic() - began, 1)
    return result


async def _play(stack: Stack, seed: int, result: DemoResult, tell: Callable[[str], None]) -> None:
    admin = stack.admin
    phones = list(PEOPLE)
    anna, boris, vera, gleb, dima = phones
    chain = await admin.referral_chain([(p, PEOPLE[p]) for p in (anna, boris, vera, gleb)])
    dmitry = await admin.register(dima, PEOPLE[dima])
    for r in [*chain, dmitry]:
        who = r.customer
        tell(f"registered {who.display_name} ({who.phone}): welcome bonus {r.welcome_points} points")
    tell("referral chain: Анна → Борис → Вера → Глеб (3 levels: 5 %, 1 %, 1 %)")

    recorder = Recorder()
    fleet = Fleet(stack.gateway_url, stack.options.api_key, tills=3, rate=12.0, seed=seed,
                  customers=phones, prefix="load", recorder=recorder,
                  config=TillConfig(retry_for_s=60.0, refund_share=0.05, cancel_share=0.02))
    await fleet.start()
    tell("3 background tills selling ~12 receipts/s to phone-identified and anonymous customers")
    vendor_acks: list[Any] = []
    vendor = [asyncio.create_task(_vendor_till(name, stack, phones, seed, tell), name=f"vendor-{name}")
              for name in _vendors()]

    async with native_client(stack.gateway_url, stack.options.api_key) as client:
        till = ScriptedTill(client, recorder, "front-01", shift=fleet.shift)

        # A big purchase crosses tier 2 (30 000 ₽ spent); the next one earns 5 % instead of 3 %.
        big = till.receipt(lines(("4600030", 20_000), ("2000301", 2_000), ("4600003", 2_000)), dima)
        applied, _ = await till.sell(big)
        tell(f"Дмитрий buys for {rub(applied.payable)}: {applied.points_to_accrue} points at tier 1 (3 %)")
        await stack.wait_drained(15)
        small = till.receipt(lines(("4600001", 2_000), ("4600010", 1_000)), dima)
        applied, _ = await till.sell(small)
        tier = (await admin.customer(dima)).tier
        tell(f"Дмитрий is now tier {tier}: {rub(applied.payable)} earns {applied.points_to_accrue} points")

        # Referral: Глеб's purchase pays Вера, Борис and Анна.
        ref = till.receipt(lines(("4600030", 6_000)), gleb)
        applied, _ = await till.sell(ref)
        await stack.wait_drained(15)
        got = [(await admin.customer(p)) for p in (vera, boris, anna)]
        tell(f"Глеб buys for {rub(applied.payable)}; referral balances now: "
             + ", ".join(f"{c.display_name} {c.balance}" for c in got))

        # Redemption with the app's one-time code (strong identification).
        code = await admin.app_code(anna)
        red = till.receipt(lines(("4600040", 3_000), ("4600031", 5_000)), f"app_code:{code}", redeem_max=True)
        applied, _ = await till.sell(red)
        tell(f"Анна shows app code {code}, redeems {applied.redeemed_points} points: "
             f"pays {rub(applied.payable)} of {rub(red.total)}")

        # Per-line return and a duplicate resend.
        ack = await till.refund(big, {"1": 5_000})
        tell(f"Дмитрий returns 5 of 20 coffee packs (line 1): refund acknowledged as {ack and ack.key}")
        again = await till.resend(small)
        tell(f"front-01 resends a sale it already sent: duplicate={again and again.duplicate}, same key")
        await stack.wait_drained(15)

        # A new customer registers at the till; she must be known offline seconds later.
        elena = await admin.register(*NEWCOMER)
        waited = await _in_offline_copy(stack, NEWCOMER[0])
        if waited is None:
            result.problems.append(f"{NEWCOMER[1]} never reached the gateway's offline copy")
        else:
            tell(f"{elena.customer.display_name} registers at the till "
                 f"({elena.welcome_points} welcome points); "
                 f"in the gateway's offline copy {waited:.1f} s later")

        # Core outage: the link goes down for several seconds; tills keep selling.
        before = recorder.offline_answers
        await stack.core_outage()
        tell(f"core link DOWN for {OUTAGE_S:.0f} s (fault proxy refuses and cuts connections)")
        await asyncio.sleep(1.0)
        off = till.receipt(lines(("4600020", 1_000), ("4600032", 2_000)), boris)
        applied, _ = await till.sell(off)
        message = str(till.answers.get(off.identity, {}).get("message", ""))
        tell(f"Борис buys during the outage: answered offline={applied.offline}, "
             f"{applied.points_to_accrue} points provisional ({message!r})")
        new = till.receipt(lines(("4600001", 1_000), ("4600010", 2_000)), NEWCOMER[0])
        applied, _ = await till.sell(new)
        answer = till.answers.get(new.identity, {})
        if answer.get("customer"):
            tell(f"{NEWCOMER[1]} buys during the outage: recognised offline, "
                 f"{applied.points_to_accrue} points provisional")
        else:
            result.problems.append(f"{NEWCOMER[1]}, registered seconds before the outage, was not "
                                   f"recognised offline: {answer.get('message', '')!r}")
        await asyncio.sleep(OUTAGE_S - 1.0)
        pending = (await stack.health()).get("pending")
        await stack.core_back()
        tell(f"core link UP: {recorder.offline_answers - before} offline answers during the outage, "
             f"{pending} events waiting in the outbox")

        t0 = time.monotonic()
        status = await stack.gateway.stop()
        t1 = time.monotonic()
        await stack.gateway.start(timeout_s=stack.options.ready_timeout_s)
        tell(f"gateway stopped with SIGTERM (exit {status} after {t1 - t0:.1f} s), ready again "
             f"{time.monotonic() - t1:.1f} s later; tills retried meanwhile")
        await asyncio.sleep(1.5)
        took = await stack.restart_gateway(kill=True)
        tell(f"gateway killed with SIGKILL mid-traffic and started again (ready in {took:.1f} s)")
        await asyncio.sleep(1.5)

    report = await fleet.stop()
    for task in vendor:
        vendor_acks += await task
    left = await stack.wait_drained(30)
    queue = await stack.operator_queue()
    tell(f"outbox drained (pending {left}); operator queue {len(queue)}; the tills saw {report.errors} "
         "errors while the gateway was down (unanswered calculates sold at full price, commits retried)")

    acks = recorder.acks + vendor_acks
    check = check_delivery(acks, stack.applied(), [str(r.get("key", "")) for r in queue])
    for phone in [*phones, NEWCOMER[0]]:
        c = await admin.customer(phone)
        result.balances.append({"name": c.display_name, "phone": c.phone, "tier": c.tier,
                                "balance": c.balance, "debt": c.debt})
    result.figures = {
        "receipts_acknowledged": check.acknowledged_sales,
        "receipts_at_core": check.sales_at_core,
        "documents_acknowledged": check.acknowledged,
        "documents_at_core": check.applied_total,
        "duplicates_at_core": len(check.duplicates),
        "lost": len(check.lost),
        "offline_answers": recorder.offline_answers,
        "calc_count": len(recorder.calc_ms),
        "calc_p50_ms": round(percentile(recorder.calc_ms, 50), 2),
        "calc_p99_ms": round(percentile(recorder.calc_ms, 99), 2),
        "operator_queue": len(queue),
        "duplicate_answers": sum(a.duplicate for a in acks),
        "till_errors": report.errors,
        "unacknowledged": report.unacknowledged,
        "gateway_starts": stack.gateway.starts,
        "till_error_samples": report.error_messages[:5],
    }
    if check.lost:
        result.problems.append(f"{len(check.lost)} acknowledged documents not at the core: {check.lost[:5]}")
    if check.duplicates:
        result.problems.append(f"applied twice at the core: {check.duplicates[:5]}")
    if queue:  # acknowledged, refused by the core: not applied, an operator must act
        reasons = sorted({str(r.get("reason", "")) for r in queue})
        result.problems.append(f"{len(queue)} documents in the operator queue ({', '.join(reasons)}): "
                               "see posgw queue list")
