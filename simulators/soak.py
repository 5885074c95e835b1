"""The soak: a thousand seeded SIGKILLs of the gateway under load from every till simulator at once.

``make soak`` (``python -m simulators.soak``) runs the real core, the fault proxy and the real
gateway (:class:`~simulators.stack.Stack`) with all four push drivers enabled (native, Evotor,
Modul Kassa, Poster), and every till simulator selling at the same time through one rate limit:

- native tills (:class:`~simulators.registers.native.Till`): sales, refunds, cancels;
- Evotor terminals (:class:`~simulators.registers.evotor.EvotorTill`): plugin closes, cloud copies,
  paybacks, cleared receipts;
- Modul Kassa registers (:class:`~simulators.registers.modulkassa.ModulKassaTill`): checks,
  returns, cancels;
- Poster tablets (:class:`PosterSeller` over :class:`~simulators.registers.poster.account.PosterAccount`):
  orders closed by the app, resent after the sync.

Meanwhile the proxy flaps the gateway's link to the core, and a seeded schedule
(:func:`kill_schedule`) decides how long the gateway lives before each SIGKILL; it is started
again at once and the tills resend whatever was not acknowledged with the same identity. At the
end the tills stop, the link comes back, the outbox drains, and
:func:`~simulators.stack_check.check_delivery` compares every acknowledgement with the core:
``lost`` (acknowledged, neither applied nor in the operator queue), ``doubled`` and the
operator queue must be empty.

Parameters from the environment (see :meth:`SoakOptions.from_env`): ``POSGW_SOAK_KILLS``
(default 1000), ``POSGW_SOAK_SEED`` (default 20240713), ``POSGW_SOAK_DURATION_S`` (stop killing
after this many seconds even if fewer kills were done; default: no limit), ``POSGW_SOAK_RATE``
(receipts per second over every till), ``POSGW_SOAK_VENDORS`` (comma separated). The report
prints the seeds, so any run can be redone; SIGINT or SIGTERM stops the killing early (the run still
drains, checks and reports). The exit status is 1 on any loss or double, or when
the outbox did not drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from simulators.registers.evotor import EvotorConfig, EvotorTill
from simulators.registers.http import Poster
from simulators.registers.modulkassa import ModulKassaConfig, ModulKassaTill
from simulators.registers.native import RateLimiter, Till, TillConfig
from simulators.registers.native.client import NativeClient
from simulators.registers.native.report import Ack, Recorder, SimReport
from simulators.registers.native.till import parse_customer
from simulators.registers.poster.account import PosterAccount, SimError
from simulators.stack import DEFAULT_PROGRAM, ROOT, Stack, StackError, StackOptions
from simulators.stack_check import DeliveryCheck, check_delivery

VENDORS = ("native", "evotor", "modulkassa", "poster")
PHONES = tuple(f"+7916300{i:04d}" for i in range(1, 9))
PLUGIN_TOKEN, CLOUD_TOKEN = "soak-plugin-token", "soak-cloud-token"
POSTER_TOKEN, POSTER_SECRET, POSTER_ACCOUNT = "soak-pair-tok", "soak-app-secret", "soak-cafe"
POSTER_MENU = ((12, Decimal("190")), (40, Decimal("85.5")), (7, Decimal("120")), (150, Decimal("0.2")))
REPORTS = ROOT / "reports"

DRIVERS_TOML = f"""
[drivers.evotor]
enabled = true
pairing_tokens = ["{PLUGIN_TOKEN}"]
cloud_user_token = "{CLOUD_TOKEN}"

[drivers.modulkassa]
enabled = true
pairing_tokens = ["{PLUGIN_TOKEN}"]

[drivers.poster]
enabled = true
pairing_tokens = ["{POSTER_TOKEN}"]
application_secret = "{POSTER_SECRET}"
"""


def all_drivers_toml() -> str:
    """The driver sections (besides native, which the stack always enables) for every till simulator."""
    return DRIVERS_TOML


def phone_program(workdir: Path, base: Path = DEFAULT_PROGRAM) -> Path:
    """The stack's program with redemption allowed on a typed phone (vendor tills show no app codes)."""
    text = base.read_text(encoding="utf-8")
    head, sep, rest = text.partition('id = "seed002"\n')
    if not sep:
        raise ValueError(f"{base}: no 'id = \"seed002\"' line to extend (the program changed)")
    path = workdir / "program-phone.toml"
    path.write_text(head + sep + 'redeem_with = ["phone", "card", "app_code"]\n' + rest, encoding="utf-8")
    return path


SOURCE_PACKAGES = ("gateway", "drivers", "simulators")


def pin_sources(stack: Stack, into: Path) -> Path:
    """Run the stack's core and gateway from a copy of the committed source (``git archive HEAD``;
    the working tree when that fails), taken now, in ``into/src``.

    The tree may change under a long run (other work in the same checkout); a restarted gateway must
    be the code the run started with, not a half-edited file. Returns the copy's directory."""
    import io
    import shutil
    import subprocess
    import tarfile

    src = into / "src"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", *SOURCE_PACKAGES],
                             capture_output=True, check=False)
    if archive.returncode == 0:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(src, filter="data")
    else:
        for package in SOURCE_PACKAGES:
            shutil.copytree(ROOT / package, src / package, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    boot = f"import runpy, sys; sys.path.insert(0, {str(src)!r}); runpy.run_module('gateway.cli', " \
           "run_name='__main__', alter_sys=True)"
    for service in (stack.core, stack.gateway):
        if service.argv[1:3] == ["-m", "gateway.cli"]:
            service.argv = [service.argv[0], "-c", boot, *service.argv[3:]]
    return src


async def start_with_retries(stack: Stack, attempts: int = 3, timeout_s: float = 60.0) -> int:
    """Start the gateway, retrying a start that fails; the failed attempts (raises after ``attempts``)."""
    for n in range(attempts):
        try:
            await stack.gateway.start(timeout_s=timeout_s)
            return n
        except StackError:
            if n == attempts - 1:
                raise
            await stack.gateway.kill()
            await asyncio.sleep(2.0)
    return attempts


def kill_schedule(seed: int, kills: int, *, min_life_s: float = 0.05, max_life_s: float = 1.0) -> list[float]:
    """Seconds the gateway lives (after it is ready) before each SIGKILL; reproducible from the seed."""
    rng = random.Random(f"soak-kills:{seed}")
    return [round(rng.uniform(min_life_s, max_life_s), 3) for _ in range(kills)]


def flap_schedule(seed: int) -> tuple[int, int]:
    """(up ms, down ms) of the core link's flapping for this seed."""
    rng = random.Random(f"soak-flap:{seed}")
    return rng.randint(800, 2500), rng.randint(150, 700)


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    return float(raw) if raw else None


@dataclass(frozen=True)
class SoakOptions:
    """What one soak run does; :meth:`from_env` reads the ``POSGW_SOAK_*`` variables."""

    kills: int = 1000
    seed: int = 20240713
    duration_s: float | None = None  # stop killing after this long (None: after ``kills``)
    vendors: tuple[str, ...] = VENDORS
    tills_per_vendor: int = 2
    rate: float = 24.0  # receipts per second over every till together
    min_life_s: float = 0.05
    max_life_s: float = 1.0
    flap: bool = True
    drain_s: float = 240.0
    keep: bool = False  # keep the work dir (logs, databases) after the run

    def __post_init__(self) -> None:
        unknown = sorted(set(self.vendors) - set(VENDORS))
        if unknown or not self.vendors:
            raise ValueError(f"vendors: unknown {unknown} (known: {', '.join(VENDORS)})" if unknown
                             else "vendors: at least one")
        if self.kills < 0 or self.tills_per_vendor < 1 or self.rate <= 0:
            raise ValueError("kills >= 0, tills_per_vendor >= 1 and rate > 0 are required")
        if not 0 < self.min_life_s <= self.max_life_s:
            raise ValueError("0 < min_life_s <= max_life_s is required")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SoakOptions:
        env = os.environ if env is None else env
        opts = cls(**overrides)
        changes: dict[str, Any] = {}
        if (kills := env.get("POSGW_SOAK_KILLS", "").strip()):
            changes["kills"] = int(kills)
        if (seed := env.get("POSGW_SOAK_SEED", "").strip()):
            changes["seed"] = int(seed)
        if (duration := _env_float(env, "POSGW_SOAK_DURATION_S")) is not None:
            changes["duration_s"] = duration
        if (rate := _env_float(env, "POSGW_SOAK_RATE")) is not None:
            changes["rate"] = rate
        if (vendors := env.get("POSGW_SOAK_VENDORS", "").strip()):
            changes["vendors"] = tuple(v.strip() for v in vendors.split(",") if v.strip())
        if env.get("POSGW_SOAK_KEEP", "").strip() in ("1", "yes", "true"):
            changes["keep"] = True
        return replace(opts, **changes)


class Seller(Protocol):
    async def sell(self) -> None: ...

    async def flush(self) -> None: ...


async def _short_sleep(seconds: float) -> None:
    """Poster's resend schedule compressed: a few hundred ms instead of minutes."""
    await asyncio.sleep(min(seconds, 0.5))


class PosterSeller:
    """One Poster tablet: an order per :meth:`sell` (calc, close, the synced resend), recorded as an
    :class:`Ack` (identity = key = the driver's documented ``poster:<account>:<tablet>:order:<id>``)."""

    def __init__(self, index: int, session: aiohttp.ClientSession, base_url: str, rec: Recorder, *,
                 rng: random.Random, customers: Sequence[str], tablet_base: int = 0) -> None:
        self.tablet = tablet_base + index + 1
        self.register_id = f"{POSTER_ACCOUNT}/1/{self.tablet}"
        self._acc = PosterAccount(base_url, secret=POSTER_SECRET, token=POSTER_TOKEN, account=POSTER_ACCOUNT,
                                  tablet=self.tablet, sleep=_short_sleep, timeout_s=3.0)
        self._session, self._rec, self._rng, self._customers = session, rec, rng, list(customers)
        self._tx = rng.randrange(10**6, 10**7) * 100

    def sale_key(self, order_id: int) -> str:
        return f"poster:{POSTER_ACCOUNT}:{self.tablet}:order:{order_id}"

    async def sell(self) -> None:
        rng = self._rng
        items = [(pid, price, Decimal(rng.randint(1, 3))) for pid, price in
                 rng.sample(POSTER_MENU, rng.randint(1, len(POSTER_MENU)))]
        phone = rng.choice(self._customers) if self._customers and rng.random() < 0.7 else ""
        self._tx += 1
        self._rec.receipts += 1
        try:
            done = await self._acc.order(self._session, items, phone=phone,
                                         redeem="max" if rng.random() < 0.4 else 0, transaction_id=self._tx)
        except SimError as exc:
            self._rec.error(f"poster order: {exc}")
            return
        key = self.sale_key(done.order_id)
        if 200 in done.statuses:  # a close (or its synced resend: the same key) was acknowledged
            self._rec.acks.append(Ack("sale", key, self.register_id, key, False, len(done.statuses), {}))
            if any(s != 200 for s in done.statuses):
                self._rec.error(f"poster {key}: answers {done.statuses} (the app's queue gave up once)")
        else:
            self._rec.unacknowledged += 1
            self._rec.error(f"poster {key}: close not acknowledged {done.statuses}")

    async def flush(self) -> None:
        """Nothing is held back."""


@dataclass
class VendorLoad:
    """The sellers of one vendor and what they recorded."""

    vendor: str
    recorder: Recorder
    sellers: list[Seller]


def build_sellers(vendor: str, index_base: int, tills: int, session: aiohttp.ClientSession, url: str,
                  api_key: str, *, seed: int, rec: Recorder, customers: Sequence[str],
                  shift: str, retry_for_s: float = 300.0) -> list[Seller]:
    """``tills`` sellers of ``vendor`` (seeded per vendor, index and ``seed``)."""
    def rng(i: int) -> random.Random:
        return random.Random(f"soak:{vendor}:{seed}:{index_base + i}")

    out: list[Seller] = []
    for i in range(tills):
        if vendor == "native":
            cfg = TillConfig(retry_for_s=retry_for_s, refund_share=0.05, cancel_share=0.03,
                             commit_timeout_s=5.0, calc_timeout_s=1.0)
            parsed = [parse_customer(c) for c in customers]
            out.append(Till(index_base + i, NativeClient(session, url, api_key), rec, rng=rng(i), shift=shift,
                            prefix=f"soak{seed}", customers=parsed, config=cfg))
        elif vendor == "evotor":
            ecfg = EvotorConfig(retry_for_s=retry_for_s, refund_share=0.05, cancel_share=0.03,
                                cloud_share=0.2, calc_timeout_s=1.0)
            out.append(EvotorTill(index_base + i, Poster(session, url), rec, rng=rng(i), token=PLUGIN_TOKEN,
                                  cloud_token=CLOUD_TOKEN, shift=shift, customers=customers, config=ecfg))
        elif vendor == "modulkassa":
            mcfg = ModulKassaConfig(retry_for_s=retry_for_s, refund_share=0.05, cancel_share=0.03,
                                    calc_timeout_s=1.0)
            out.append(ModulKassaTill(index_base + i, Poster(session, url), rec, rng=rng(i),
                                      token=PLUGIN_TOKEN, shift=int(shift[-6:]), customers=customers,
                                      config=mcfg))
        elif vendor == "poster":
            out.append(PosterSeller(i, session, url, rec, rng=rng(i), customers=customers,
                                    tablet_base=index_base))
        else:
            raise ValueError(f"unknown vendor {vendor!r}")
    return out


class Load:
    """Every vendor's tills selling through one rate limit from :meth:`start` until :meth:`stop`."""

    def __init__(self, url: str, api_key: str, *, vendors: Sequence[str], tills_per_vendor: int, rate: float,
                 seed: int, customers: Sequence[str], index_base: int = 0) -> None:
        self.url, self.api_key, self.seed = url, api_key, seed
        self.vendors, self.tills, self.customers = list(vendors), tills_per_vendor, list(customers)
        self.index_base = index_base
        self.shift = datetime.now(UTC).strftime("%y%m%d%H%M%S")
        self.loads: dict[str, VendorLoad] = {}
        self._limiter = RateLimiter(rate)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.started = 0.0

    async def start(self) -> None:
        self.started = time.monotonic()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        for vendor in self.vendors:
            rec = Recorder()
            sellers = build_sellers(vendor, self.index_base, self.tills, self._session, self.url,
                                    self.api_key, seed=self.seed, rec=rec, customers=self.customers,
                                    shift=self.shift)
            self.loads[vendor] = VendorLoad(vendor, rec, sellers)
        self._task = asyncio.create_task(self._run(), name="soak-load")

    async def _run(self) -> None:
        async def work(vendor: str, seller: Seller) -> None:
            rec = self.loads[vendor].recorder
            while not self._stopping.is_set():
                await self._limiter.acquire()
                if self._stopping.is_set():
                    break
                try:
                    await seller.sell()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # a till's own bug is not ours
                    rec.error(f"{vendor}: {type(exc).__name__}: {exc}")
            await seller.flush()

        async with asyncio.TaskGroup() as group:
            for vendor, load in self.loads.items():
                for n, seller in enumerate(load.sellers):
                    group.create_task(work(vendor, seller), name=f"soak-{vendor}-{n}")

    async def stop(self, timeout_s: float = 400.0) -> dict[str, SimReport]:
        """Let every till finish its current receipt (resends included), then report per vendor."""
        self._stopping.set()
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, timeout_s)
        finally:
            if self._session is not None:
                await self._session.close()
        return self.reports()

    def reports(self) -> dict[str, SimReport]:
        elapsed = time.monotonic() - self.started
        return {v: load.recorder.report(seed=self.seed, tills=len(load.sellers), elapsed_s=elapsed)
                for v, load in self.loads.items()}

    def acks(self) -> list[Ack]:
        return [a for load in self.loads.values() for a in load.recorder.acks if a.key]


async def register_customers(stack: Stack, phones: Sequence[str] = PHONES) -> None:
    """Register ``phones`` a minute back-dated (cloud copies stamp receipts to the second)."""
    for i, phone in enumerate(phones):
        await stack.admin.register(phone, f"Покупатель {i + 1}", at=datetime.now(UTC) - timedelta(minutes=1))


@dataclass
class SoakResult:
    """What a soak run did and found; :attr:`ok` is the verdict."""

    seed: int
    kills_planned: int
    kills_done: int
    vendors: list[str]
    flap_ms: tuple[int, int] | None
    duration_s: float
    restart_s_p50: float
    restart_s_max: float
    acknowledged: int
    applied_total: int
    lost: list[str]
    doubled: list[str]
    in_operator_queue: list[str]
    applied_unacknowledged: int
    pending_after_drain: int
    drain_s: float
    per_vendor: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy: dict[str, int] = field(default_factory=dict)
    workdir: str = ""
    failed_starts: int = 0
    stopped_early: str = ""

    @property
    def ok(self) -> bool:
        # something a till was told is stored and the core refused (the operator queue) was not
        # applied either: the run does not pass, whatever the reason the core gave
        return (not self.lost and not self.doubled and not self.in_operator_queue
                and self.pending_after_drain == 0 and self.acknowledged > 0 and not self.stopped_early)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def _flap_text(self) -> str:
        return f"{self.flap_ms[0]} ms up / {self.flap_ms[1]} ms down" if self.flap_ms else "off"

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        lines = [
            f"soak {verdict}: seed {self.seed} (rerun: POSGW_SOAK_SEED={self.seed} "
            f"POSGW_SOAK_KILLS={self.kills_planned} make soak)",
            f"  SIGKILLs {self.kills_done} of {self.kills_planned} planned in {self.duration_s:.1f} s; "
            f"restart to ready p50 {self.restart_s_p50:.2f} s, max {self.restart_s_max:.2f} s",
            f"  core link flapping: {self._flap_text()}; "
            f"proxy cuts {self.proxy.get('cuts', 0)}, connections cut {self.proxy.get('cut_connections', 0)}",
            f"  tills: {', '.join(self.vendors)}; gateway starts that failed and were retried: "
            f"{self.failed_starts}",
        ]
        if self.stopped_early:
            lines.append(f"  STOPPED EARLY: {self.stopped_early}")
        for vendor, fig in self.per_vendor.items():
            lines.append(f"    {vendor:<11} receipts {fig['receipts']:>6}"
                         f"  acked sales {fig['acknowledged']:>6}"
                         f"  refunds {fig['refunds']:>5}  cancels {fig['cancels']:>5}"
                         f"  unacked {fig['unacknowledged']:>4}  errors {fig['errors']:>4}")
        lines += [
            f"  keys acknowledged {self.acknowledged}; applied at the core {self.applied_total}; "
            f"applied but never acknowledged {self.applied_unacknowledged}",
            f"  LOST {len(self.lost)}  DOUBLED {len(self.doubled)}"
            f"  in operator queue {len(self.in_operator_queue)}"
            f"  pending after drain {self.pending_after_drain} (drained in {self.drain_s:.1f} s)",
        ]
        lines += [f"    lost: {k}" for k in self.lost[:10]]
        lines += [f"    doubled: {k}" for k in self.doubled[:10]]
        lines += [f"    queued: {k}" for k in self.in_operator_queue[:10]]
        return "\n".join(lines)


Progress = Callable[[str], None]


async def run_soak(options: SoakOptions, workdir: Path, *, progress: Progress | None = None,
                   stop: asyncio.Event | None = None) -> SoakResult:
    """One soak run in ``workdir`` (see the module docstring); setting ``stop`` ends the killing
    early, and the run still drains, checks and reports what it did."""
    stop = stop or asyncio.Event()
    say = progress or (lambda _msg: None)
    schedule = kill_schedule(options.seed, options.kills, min_life_s=options.min_life_s,
                             max_life_s=options.max_life_s)
    flap = flap_schedule(options.seed) if options.flap else None
    os.makedirs(workdir, exist_ok=True)
    stack_opts = StackOptions(program=phone_program(workdir), extra_toml=all_drivers_toml(), hold_ttl_s=60,
                              calc_budget_ms=300, ready_timeout_s=60.0)
    began = time.monotonic()
    restarts: list[float] = []
    stack = Stack(workdir, stack_opts)
    pin_sources(stack, workdir)
    failed_starts = 0
    stopped_early = ""
    async with stack:
        await register_customers(stack)
        load = Load(stack.gateway_url, stack.options.api_key, vendors=options.vendors,
                    tills_per_vendor=options.tills_per_vendor, rate=options.rate, seed=options.seed,
                    customers=PHONES)
        await load.start()
        if flap is not None:
            await stack.proxy.set_mode("flap", flap_ms=flap[0], flap_down_ms=flap[1])
        kills = 0
        try:
            for life in schedule:
                if stop.is_set() or (options.duration_s is not None
                                     and time.monotonic() - began > options.duration_s):
                    break
                await asyncio.sleep(life)
                await stack.gateway.kill()
                kills += 1
                t0 = time.monotonic()
                try:
                    failed_starts += await start_with_retries(stack)
                except StackError as exc:
                    stopped_early = f"the gateway did not start again: {str(exc).splitlines()[0]}"
                    break
                restarts.append(time.monotonic() - t0)
                if kills % 50 == 0:
                    acked = sum(len(v.recorder.acks) for v in load.loads.values())
                    say(f"  {kills}/{len(schedule)} kills, {time.monotonic() - began:.0f} s, {acked} acks")
            await asyncio.sleep(1.0)
        finally:
            await stack.proxy.set_mode("pass")
            reports = await load.stop()
        killing_s = time.monotonic() - began
        t0 = time.monotonic()
        pending = await stack.wait_drained(options.drain_s)
        drain_s = time.monotonic() - t0
        queue = []
        with contextlib.suppress(Exception):
            queue = await stack.operator_queue()
        queue_keys = [str(item.get("key", "")) for item in queue]
        check: DeliveryCheck = check_delivery(load.acks(), stack.applied(), queue_keys)
        proxy_stats = stack.proxy.stats().to_json()
    restarts.sort()
    return SoakResult(
        seed=options.seed, kills_planned=len(schedule), kills_done=kills, vendors=list(options.vendors),
        flap_ms=flap, duration_s=round(killing_s, 1),
        restart_s_p50=round(restarts[len(restarts) // 2], 3) if restarts else 0.0,
        restart_s_max=round(restarts[-1], 3) if restarts else 0.0,
        acknowledged=check.acknowledged, applied_total=check.applied_total, lost=check.lost,
        doubled=check.duplicates, in_operator_queue=check.in_operator_queue,
        applied_unacknowledged=len(check.applied_unacknowledged), pending_after_drain=pending,
        drain_s=round(drain_s, 1),
        per_vendor={v: {k: val for k, val in r.to_json(with_acks=False).items()
                        if k not in ("error_messages",)} | {"error_messages": r.error_messages[:5]}
                    for v, r in reports.items()},
        proxy=proxy_stats, workdir=str(workdir), failed_starts=failed_starts, stopped_early=stopped_early,
    )


def write_report(result: SoakResult, directory: Path = REPORTS) -> Path:
    """``reports/soak-<seed>.json`` (generated at run time, never committed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"soak-{result.seed}.json"
    path.write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


async def _main(options: SoakOptions) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="posgw-soak-"))
    print(f"soak: {options.kills} SIGKILLs, seed {options.seed}, tills {', '.join(options.vendors)} "
          f"x{options.tills_per_vendor}, {options.rate:g} receipts/s, work dir {tmp}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop killing, then drain, check and report
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    result = await run_soak(options, tmp, progress=lambda m: print(m, flush=True), stop=stop)
    print(result.summary())
    print(f"report: {write_report(result)}")
    if result.ok and not options.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result.ok else 1


def main() -> int:
    """``make soak``: parameters from ``POSGW_SOAK_*``; the exit status is the verdict."""
    return asyncio.run(_main(SoakOptions.from_env()))


if __name__ == "__main__":
    sys.exit(main())
