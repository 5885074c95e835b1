"""The run of N simulated tills against one gateway, and the CLI plumbing every simulator shares.

Owns:
- :func:`run_fleet`: one aiohttp session for all tills (a connection pool of ``max(2 * tills,
  10)``), the work split (tills take receipts from one counter until ``receipts`` are rung up,
  each optionally paced, then :meth:`Seller.flush`), named tasks in one TaskGroup, and the
  :class:`~simulators.registers.native.report.SimReport`. The seed is drawn once when not
  given, so every run can be reproduced from its report;
- :func:`delivered` / :func:`accepted`: how every till records a commit's delivery (retries,
  timeouts, given up) and a vendor plugin's ``{"accepted": true}`` answer;
- :func:`follow_up`, :func:`pick_returnable`, :func:`return_qty`: after a sale, now and then a
  cancel or a (partial) return of an earlier one;
- :func:`share`, :func:`add_run_arguments`, :func:`add_misbehaviour_arguments`, :func:`customers_of`,
  :func:`print_report`: the
  ``posgw sim <vendor>`` arguments and output every vendor's CLI has in common, with the same
  environment variables for every simulator: ``POSGW_GATEWAY`` (``--gateway``),
  ``POSGW_SIM_TILLS``, ``POSGW_SIM_RECEIPTS``, ``POSGW_SIM_SEED``, ``POSGW_SIM_CUSTOMERS``, and
  ``POSGW_<DRIVER>_TOKEN`` for the credential a till presents (each CLI's ``--token``/``--api-key``).

Ctrl-C: the first stops the tills taking new receipts; what they have in hand is finished, the
run's report is printed (marked interrupted, with what was asked) and the exit status is 130.
A second Ctrl-C cancels what is in hand too (those documents may be unacknowledged).
Gateway trouble is counted in the report by the tills, never raised here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import aiohttp

from simulators.registers.http import Delivery, RetriableStatus, TransportError
from simulators.registers.native.report import Ack, Recorder, SimReport
from simulators.registers.queue import add_queue_arguments, check

C = TypeVar("C")


class Seller(Protocol):
    """One simulated till: :meth:`sell` rings up one receipt; :meth:`flush` sends what it held back."""

    async def sell(self) -> None: ...

    async def flush(self) -> None: ...


def check_counts(tills: int, receipts: int) -> None:
    """Raises ValueError unless ``tills >= 1`` and ``receipts >= 0``."""
    if tills < 1 or receipts < 0:
        raise ValueError("tills must be >= 1 and receipts >= 0")


def resolve_seed(seed: int | None) -> int:
    """``seed``, or a fresh one from the system's randomness (reported, so the run can be redone)."""
    return random.SystemRandom().randrange(2**31) if seed is None else seed


async def run_fleet(
    *,
    name: str,
    tills: int,
    receipts: int,
    seed: int,
    connect: Callable[[aiohttp.ClientSession], C],
    build: Callable[[int, C, Recorder], Seller],
    pace: Callable[[], Awaitable[None]] | None = None,
) -> SimReport:
    """Run ``tills`` tills (``build(index, client, recorder)``; ``client = connect(session)``,
    one for all) until ``receipts`` receipts are rung up; tasks are named ``sim-<name>-<n>``."""
    check_counts(tills, receipts)
    recorder = Recorder()
    remaining = receipts
    started = time.monotonic()
    stop = asyncio.Event()  # set by Ctrl-C: no new receipt is rung up
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(2 * tills, 10))) as session:
        client = connect(session)

        async def work(till: Seller) -> None:
            nonlocal remaining
            while remaining > 0 and not stop.is_set():
                remaining -= 1
                if pace is not None:
                    await pace()
                await till.sell()
            await till.flush()

        with ctrl_c(stop, tasks):
            async with asyncio.TaskGroup() as group:  # a till cancelled by a second Ctrl-C just ends
                for i in range(tills):
                    till = build(i, client, recorder)
                    tasks.append(group.create_task(work(till), name=f"sim-{name}-{i + 1}"))
    return recorder.report(seed=seed, tills=tills, elapsed_s=time.monotonic() - started, asked=receipts,
                           interrupted=stop.is_set())


@contextlib.contextmanager
def ctrl_c(stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> Iterator[None]:
    """While the block runs: the first SIGINT sets ``stop``, the second cancels ``tasks``. Only in
    the main thread, when SIGINT has Python's default handler (or :func:`asyncio.run`'s, which
    would cancel the whole run) and the loop can take signal handlers (not on Windows' proactor
    loop): otherwise Ctrl-C stays what it was. The previous handler is put back after."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if not stop.is_set():
            stop.set()
            print("posgw sim: Ctrl-C: finishing the receipts in hand, then the report "
                  "(Ctrl-C again: stop now)", file=sys.stderr)
            return
        for task in tasks:
            task.cancel()

    installed = False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    owner = getattr(getattr(previous, "func", previous), "__self__", None)  # asyncio.run's: a partial
    if previous is signal.default_int_handler or isinstance(owner, asyncio.Runner):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, interrupted)
            installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)


async def delivered(rec: Recorder, what: str, delivery: Awaitable[Delivery]) -> Delivery | None:
    """Await a commit's delivery and count its retries and timeouts; None (recorded as
    unacknowledged) when the resends ran out. ``what`` names the document in the error."""
    try:
        done = await delivery
    except (TransportError, RetriableStatus) as exc:
        rec.unacknowledged += 1
        rec.error(f"{what}: not acknowledged, gave up: {exc}")
        return None
    rec.retries += done.attempts - 1
    rec.timeouts += done.timeouts
    return done


async def accepted(
    rec: Recorder, delivery: Awaitable[Delivery], *, kind: str, identity: str, register_id: str, key: str
) -> Ack | None:
    """:func:`delivered`, then a vendor plugin's answer: 200 with ``"accepted": true`` gives an
    :class:`Ack` under ``key``, recorded unless the gateway ignored the document (``"ignored"``:
    key ""); anything else None (recorded as unacknowledged)."""
    what = f"{kind} {identity}"
    done = await delivered(rec, what, delivery)
    if done is None:
        return None
    data = done.answer.data
    if done.answer.status != 200 or not isinstance(data, dict) or data.get("accepted") is not True:
        rec.unacknowledged += 1
        rec.error(f"{what}: HTTP {done.answer.status} {done.answer.error_text()}")
        return None
    key = "" if data.get("ignored") else key
    ack = Ack(kind, identity, register_id, key, bool(data.get("duplicate")), done.attempts, data)
    if ack.key:
        rec.acks.append(ack)
    return ack


class _Returnable(Protocol):
    remaining: dict[str, int]  # line id -> qty (thousandths) not yet returned


R = TypeVar("R", bound=_Returnable)


def pick_returnable(rng: random.Random, sold: Sequence[R]) -> R | None:
    """One of ``sold`` with something left to return (a draw from ``rng`` only when there is one)."""
    candidates = [s for s in sold if any(s.remaining.values())]
    return rng.choice(candidates) if candidates else None


def return_qty(rng: random.Random, left: int, *, weighted: bool) -> int:
    """What comes back of a line with ``left`` thousandths: all of a weight good (or of less than
    one piece), else a whole number of pieces."""
    return left if weighted or left < 1000 else 1000 * rng.randint(1, left // 1000)


async def follow_up(
    rng: random.Random,
    *,
    cancel_share: float,
    refund_share: float,
    cancel: Callable[[], Awaitable[None]],
    refund: Callable[[], Awaitable[None]],
) -> None:
    """After a sale: ``cancel()`` with ``cancel_share``, else ``refund()`` with ``refund_share``
    (one draw from ``rng`` either way, so seeded runs stay reproducible)."""
    roll = rng.random()
    if roll < cancel_share:
        await cancel()
    elif roll < cancel_share + refund_share:
        await refund()


# -- the CLI ----------------------------------------------------------------------------------


def share(text: str) -> float:
    """An argparse type: a probability 0..1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability 0..1, got {text}")
    return value


ENV_GATEWAY, ENV_TILLS, ENV_RECEIPTS, ENV_SEED, ENV_CUSTOMERS = (
    "POSGW_GATEWAY", "POSGW_SIM_TILLS", "POSGW_SIM_RECEIPTS", "POSGW_SIM_SEED", "POSGW_SIM_CUSTOMERS")


def env_first(*names: str, default: str = "") -> str:
    """The value of the first of ``names`` set (non-empty) in the environment, else ``default``."""
    return next((os.environ[n] for n in names if os.environ.get(n)), default)


def add_run_arguments(parser: argparse.ArgumentParser, *, tills: int, receipts: int,
                      customers_help: str = "comma-separated phones, e.g. +79160000101") -> None:
    """``--gateway``, ``--tills``, ``--receipts``, ``--seed``, ``--customers``; each defaults to its
    environment variable (see the module docstring), then to the simulator's own default."""
    gateway = env_first(ENV_GATEWAY)
    parser.add_argument("--gateway", required=not gateway, default=gateway or None,
                        help=f"gateway base URL, e.g. http://127.0.0.1:8080 (default ${ENV_GATEWAY})")
    # string defaults from the environment go through ``type``: a bad value is a usage error
    parser.add_argument("--tills", type=int, default=env_first(ENV_TILLS, default=str(tills)),
                        help=f"tills selling concurrently (default ${ENV_TILLS} or {tills})")
    parser.add_argument("--receipts", type=int, default=env_first(ENV_RECEIPTS, default=str(receipts)),
                        help=f"receipts in total (default ${ENV_RECEIPTS} or {receipts})")
    parser.add_argument("--seed", type=int, default=env_first(ENV_SEED) or None,
                        help=f"random seed (reproducible receipts; default ${ENV_SEED} or a fresh one)")
    parser.add_argument("--customers", default=env_first(ENV_CUSTOMERS),
                        help=f"{customers_help} (default ${ENV_CUSTOMERS})")


def add_output_arguments(parser: argparse.ArgumentParser, *, acks_switch: bool = False) -> None:
    """``--json``, ``--no-queue-check``, ``--settle-s`` (and, with ``acks_switch``, ``--no-acks``)."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_queue_arguments(parser)
    if acks_switch:
        parser.add_argument("--no-acks", action="store_true",
                            help="with --json, leave out the acknowledgements")


def add_misbehaviour_arguments(parser: argparse.ArgumentParser, shares: Sequence[str]) -> None:
    """A ``--<name>`` probability per name in ``shares``; ``--resend-timeout-ms``, ``--slow-reads``."""
    bad = parser.add_argument_group("misbehaviour (probabilities 0..1)")
    for name in shares:
        bad.add_argument(f"--{name}", type=share, default=0.0)
    bad.add_argument("--resend-timeout-ms", type=int, default=20)
    bad.add_argument("--slow-reads", type=int, default=0, metavar="MS", help="pause per 64-byte chunk read")


def misbehaviour_of(args: argparse.Namespace, shares: Sequence[str]) -> dict[str, Any]:
    """What :func:`add_misbehaviour_arguments` parsed, as a vendor ``Misbehaviour``'s keywords."""
    out = {name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name in shares}
    return {**out, "resend_timeout_ms": args.resend_timeout_ms, "slow_read_ms": args.slow_reads}


def customers_of(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [c.strip() for c in text.split(",") if c.strip()]


def print_report(report: SimReport, args: argparse.Namespace) -> int:
    """Wait (at most ``args.settle_s``) until the gateway holds nothing pending or waiting, then ask
    its operator queue what of this run was not applied (:func:`simulators.registers.queue.check`;
    unless ``args.no_queue_check``; POSGW_ADMIN_KEY authorises it), add each row (and documents
    still held, or a queue that could not be read) to the report's errors,
    print the report (``--json``: one JSON object, without acks under ``--no-acks``); the exit
    status: 0 when nothing went wrong, 1 when the report counts errors (a queued row is one),
    130 when Ctrl-C stopped the run early."""
    if getattr(args, "gateway", "") and not getattr(args, "no_queue_check", False):
        _, lines = asyncio.run(check(args, since=time.time() - report.elapsed_s - 1.0))
        if lines:  # a queued row, documents still pending/waiting, or an unread queue: not a pass
            report = dataclasses.replace(report, errors=report.errors + len(lines),
                                         error_messages=[*lines, *report.error_messages])
    if args.json:
        print(json.dumps(report.to_json(with_acks=not getattr(args, "no_acks", False)), ensure_ascii=False))
    else:
        print(report.summary())
    if report.interrupted:
        return INTERRUPTED
    return 1 if report.errors else 0


INTERRUPTED = 130  # the shell's status for a run stopped by SIGINT
