"""``posgw sim fleet``: many gateways' delivery streams against a loyalty core or a cluster of its replicas.

``posgw sim fleet --core host:port[,host:port...] --gateways 200 --tills 4 --minutes 10
[--processes 2]`` registers the fleet's customers (``--customers``, unless ``--no-register``),
then runs ``--gateways`` lightweight gateways (:mod:`simulators.fleet.streams`: one balanced
channel and one long-lived ``StreamEvents`` stream each, ``--tills`` registers, one sale per
register per round, resent from the first unacknowledged event after a broken stream), spread
over ``--processes`` worker processes. Every run gets its own register and key prefix
(``--prefix``, default from the clock), so runs against one core never collide.

The report gives events acknowledged, commits/s, stream reconnects, retriable refusals, events
refused for good (what a real gateway would put in its operator queue) and events still
unacknowledged when the drain time (``--drain-s``) ran out. The exit status is 0 only when
every event sent was acknowledged: 1 when something was refused for good or left
unacknowledged, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from simulators.fleet.streams import MAX_CUSTOMERS, register_customers, run_fleet

ENV_CORE = "POSGW_CORE_ADDRESS"
DEFAULT_CORE = "127.0.0.1:50051"


@dataclass(frozen=True)
class Slice:
    """One worker process's share of the fleet."""

    addresses: tuple[str, ...]
    first_index: int
    gateways: int
    tills: int
    seconds: float
    customers: int
    round_s: float
    drain_s: float
    prefix: str
    seed: int | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core", default=os.environ.get(ENV_CORE) or DEFAULT_CORE, metavar="HOST:PORT[,...]",
                        help=f"the core's gRPC address, or several replicas comma-separated "
                        f"(default ${ENV_CORE} or {DEFAULT_CORE})")
    parser.add_argument("--gateways", type=int, default=200, help="simulated gateways (default 200)")
    parser.add_argument("--tills", type=int, default=4, help="registers per gateway (default 4)")
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to sell (default 1)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--customers", type=int, default=100, help="customers the sales go to (default 100)")
    parser.add_argument("--no-register", action="store_true",
                        help="do not register the customers first (they exist from an earlier run)")
    parser.add_argument("--round-s", type=float, default=1.0,
                        help="mean pause between a gateway's rounds, seconds "
                        "(uniform 0.5x to 1.5x; default 1)")
    parser.add_argument("--drain-s", type=float, default=120.0,
                        help="after selling, how long to deliver what is still unacknowledged (default 120)")
    parser.add_argument("--prefix", default="", help="register and key prefix (default: F + the clock)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible sales)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _usage(args: argparse.Namespace) -> str | None:
    if args.gateways < 1 or args.tills < 1 or args.processes < 1 or args.customers < 1:
        return "--gateways, --tills, --processes and --customers must be at least 1"
    if args.customers > MAX_CUSTOMERS:
        return f"--customers {args.customers}: at most {MAX_CUSTOMERS}"
    if args.minutes <= 0 or args.round_s <= 0 or args.drain_s < 0:
        return "--minutes and --round-s must be positive, --drain-s not negative"
    if not all(a.strip() for a in args.core.split(",")):
        return f"--core {args.core!r}: give host:port, or several comma-separated"
    return None


def _slices(args: argparse.Namespace, prefix: str) -> list[Slice]:
    addresses = tuple(a.strip() for a in args.core.split(","))
    per, extra = divmod(args.gateways, args.processes)
    out, first = [], 0
    for p in range(min(args.processes, args.gateways)):
        n = per + (1 if p < extra else 0)
        seed = None if args.seed is None else args.seed * 1000 + p
        out.append(Slice(addresses, first, n, args.tills, args.minutes * 60, args.customers, args.round_s,
                         args.drain_s, prefix, seed))
        first += n
    return out


async def _run_slice(part: Slice) -> dict[str, Any]:
    pause = (0.5 * part.round_s, 1.5 * part.round_s)
    fleet, totals = await run_fleet(part.addresses, gateways=part.gateways, tills=part.tills,
                                    seconds=part.seconds, customers=part.customers, pause_s=pause,
                                    drain_s=part.drain_s, key_prefix=part.prefix,
                                    first_index=part.first_index, seed=part.seed)
    return {
        "sent": totals.sent, "acked": totals.acked, "reconnects": totals.reconnects,
        "retriable_refusals": totals.retriable, "refused_for_good": len(totals.final_refusals),
        "refusals": totals.final_refusals[:10], "unacknowledged": sum(len(gw.pending) for gw in fleet),
        "points_accrued": sum(totals.accrued_by_key.values()),
    }


def _worker(part: Slice) -> dict[str, Any]:
    return asyncio.run(_run_slice(part))


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's report from its slices' (sums; the first refusals of each, up to 10)."""
    out: dict[str, Any] = {key: sum(p[key] for p in parts) for key in (
        "sent", "acked", "reconnects", "retriable_refusals", "refused_for_good", "unacknowledged",
        "points_accrued")}
    out["refusals"] = [r for p in parts for r in p["refusals"]][:10]
    return out


def run(args: argparse.Namespace) -> int:
    problem = _usage(args)
    if problem is not None:
        print(f"posgw sim fleet: {problem}", file=sys.stderr)
        return 2
    prefix = args.prefix or f"F{int(time.time()):x}"
    first = args.core.split(",")[0].strip()
    if not args.no_register:
        try:
            asyncio.run(register_customers(first, args.customers))
        except grpc.RpcError as exc:
            print(f"posgw sim fleet: registering the customers at {first} failed: {exc}", file=sys.stderr)
            return 1
    parts = _slices(args, prefix)
    began = time.monotonic()
    if len(parts) == 1:
        results = [_worker(parts[0])]
    else:  # spawn: a forked child would inherit the parent's gRPC state
        with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_worker, parts))
    took = time.monotonic() - began
    report = merge(results)
    report.update(gateways=args.gateways, tills=args.tills, processes=len(parts), prefix=prefix,
                  seconds=round(took, 1), commits_per_s=round(report["acked"] / took, 1) if took else 0.0)
    ok = report["refused_for_good"] == 0 and report["unacknowledged"] == 0
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"fleet {prefix}: {args.gateways} gateways x {args.tills} tills in {len(parts)} process(es), "
              f"{took:.0f} s: {report['acked']} events acknowledged ({report['commits_per_s']}/s), "
              f"{report['reconnects']} stream reconnects, {report['retriable_refusals']} retriable refusals, "
              f"{report['refused_for_good']} refused for good (operator queue), "
              f"{report['unacknowledged']} unacknowledged")
        for line in report["refusals"]:
            print(f"  refused: {line}")
    if not ok:
        print("posgw sim fleet: not every event sent was acknowledged (see the counts above)",
              file=sys.stderr)
    return 0 if ok else 1
