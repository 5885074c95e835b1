"""``posgw outbox``: salvage a damaged outbox by hand; acknowledge a salvage the daemon made.

    posgw outbox salvage FILE [--into NEW]
    posgw outbox ack-salvage (--config FILE | --outbox PATH)

``salvage`` copies every readable row of FILE into the new outbox NEW (default
``FILE.salvaged``; it must not exist) the way the daemon does at start (:mod:`gateway.salvage`),
prints what it salvaged and lost, and never writes FILE. Point ``[outbox] path`` at NEW (or
move NEW into FILE's place with the gateway stopped); the gateway reports degraded until the
salvage is acknowledged. ``ack-salvage`` is that acknowledgement (also ``POST
/v1/outbox/ack-salvage`` with the admin key); it works next to a running daemon.

Exit codes: salvage: 0 every row was read, 1 rows were lost (or the file could not be walked
to its end), 2 usage (FILE missing, NEW exists); ack-salvage: 0 acknowledged, 1 nothing to
acknowledge or the outbox unusable, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from gateway.commands.queue import UsageProblem, outbox_path
from gateway.errors import StorageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("salvage", help="copy the readable rows of a damaged outbox into a new file")
    p.add_argument("file", type=Path, metavar="FILE", help="the damaged outbox (never written)")
    p.add_argument("--into", type=Path, metavar="NEW", help="the new outbox (default FILE.salvaged)")
    p = sub.add_parser("ack-salvage", help="acknowledge a salvage (the gateway stops reporting degraded)")
    p.add_argument("--config", type=Path, help="gateway config (its [outbox] path)")
    p.add_argument("--outbox", type=Path, help="outbox file, instead of --config")


def run(args: argparse.Namespace) -> int:
    if args.action == "salvage":
        return _salvage(args.file, args.into)
    try:
        path = outbox_path(args)
    except UsageProblem as exc:
        print(str(exc).replace("posgw queue", "posgw outbox ack-salvage"), file=sys.stderr)
        return 2
    try:
        return asyncio.run(_ack(path))
    except StorageError as exc:
        print(f"posgw outbox: {exc}", file=sys.stderr)
        return 1


def _salvage(source: Path, into: Path | None) -> int:
    from gateway.salvage import rows_of, salvage

    if not source.is_file():
        print(f"posgw outbox salvage: no file {source}", file=sys.stderr)
        return 2
    target = into or source.with_name(source.name + ".salvaged")
    if target.exists():
        print(f"posgw outbox salvage: {target} exists: name a new file with --into", file=sys.stderr)
        return 2
    try:
        report = salvage(source, target, now=time.time())
    except OSError as exc:
        print(f"posgw outbox salvage: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, FileExistsError | FileNotFoundError) else 1
    for line in rows_of(report):
        print(line)
    if report.everything_read:
        print(f"every row was read; point [outbox] path at {target} (or put it in place of {source} "
              "with the gateway stopped), then acknowledge with `posgw outbox ack-salvage`")
        return 0
    print(f"rows were lost: keep {source} for inspection; the tills' records show what is missing")
    return 1


async def _ack(path: Path) -> int:
    from gateway.outbox import Outbox

    outbox = await Outbox.open(path, create=False, recover=False)
    try:
        reports = (await outbox.stats()).salvage
        if not reports:
            print(f"nothing to acknowledge: {path} has no unacknowledged salvage")
            return 1
        n = await outbox.ack_salvage()
        for r in reports:
            where = r.moved_to or r.source
            print(f"acknowledged: {r.salvaged} salvaged, {r.lost} lost, damaged file at {where}")
        print(f"{n} salvage report(s) acknowledged; the gateway no longer reports degraded")
        return 0
    finally:
        await outbox.close()
