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
  ``posgw sim <vendor>`` arguments and output every vendor's CLI has in common.

Gateway trouble is counted in the report by the tills, never raised here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import aiohttp

from simulators.registers.http import Delivery, RetriableStatus, TransportError
from simulators.registers.native.report import Ack, Recorder, SimReport
from simulators.registers.queue import operator_queue, queue_lines

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
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(2 * tills, 10))) as session:
        client = connect(session)

        async def work(till: Seller) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                if pace is not None:
                    await pace()
                await till.sell()
            await till.flush()

        async with asyncio.TaskGroup() as group:
            for i in range(tills):
                group.create_task(work(build(i, client, recorder)), name=f"sim-{name}-{i + 1}")
    return recorder.report(seed=seed, tills=tills, elapsed_s=time.monotonic() - started)


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


def add_run_arguments(parser: argparse.ArgumentParser, *, tills: int, receipts: int,
                      customers_help: str = "comma-separated phones, e.g. +79160000101") -> None:
    """``--gateway``, ``--tills``, ``--receipts``, ``--seed``, ``--customers``."""
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--tills", type=int, default=tills,
                        help=f"tills selling concurrently (default {tills})")
    parser.add_argument("--receipts", type=int, default=receipts,
                        help=f"receipts in total (default {receipts})")
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible receipts)")
    parser.add_argument("--customers", default="", help=customers_help)


def add_output_arguments(parser: argparse.ArgumentParser, *, acks_switch: bool = False) -> None:
    """``--json`` (and, with ``acks_switch``, ``--no-acks``)."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
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
    """Ask the gateway's operator queue what of this run was not applied (unless
    ``args.no_queue_check``; POSGW_ADMIN_KEY authorises it), add each row to the report's errors,
    print the report (``--json``: one JSON object, without acks under ``--no-acks``); the exit
    status: 0 when nothing went wrong, 1 when the report counts errors (a queued row is one)."""
    if getattr(args, "gateway", "") and not getattr(args, "no_queue_check", False):
        since = time.time() - report.elapsed_s - 1.0
        rows, problem = asyncio.run(operator_queue(args.gateway, since=since,
                                                   admin_key=os.environ.get("POSGW_ADMIN_KEY", "")))
        if problem:
            print(f"operator queue not checked: {problem}", file=sys.stderr)
        lines = queue_lines(rows)
        if lines:
            report = dataclasses.replace(report, errors=report.errors + len(lines),
                                         error_messages=[*lines, *report.error_messages])
    if args.json:
        print(json.dumps(report.to_json(with_acks=not getattr(args, "no_acks", False)), ensure_ascii=False))
    else:
        print(report.summary())
    return 1 if report.errors else 0
