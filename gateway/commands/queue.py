"""``posgw queue``: list, show, retry and resolve events the core rejected for good.

    posgw queue --config FILE list [--json]
    posgw queue --config FILE list --pending [--limit N] [--json]
    posgw queue --outbox PATH show ID [--json]
    posgw queue --config FILE retry ID
    posgw queue --config FILE resolve ID --note "refunded in cash"

Works next to a running daemon (SQLite WAL lets both open the outbox): a retried event goes
back to pending and the daemon's sender picks it up within its rescan interval. The command
never creates, repairs or moves an outbox file; it refuses one it cannot read, and says when
the file is damaged (with the ``posgw outbox salvage`` command to run) or cannot be used
(permissions, read-only filesystem: the path and the fix).

Exit codes: 0 done; 1 nothing done (unknown id, not rejected, outbox unreadable); 2 bad
config or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import StorageError
from gateway.outbox_db import OutboxDamaged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _source_options(parser, None)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list rejected events (the operator queue), or --pending")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--pending", action="store_true",
                   help="list what is not delivered yet (pending, and waiting for its sale), oldest first")
    p.add_argument("--limit", type=int, default=50, help="with --pending: at most this many of each state")
    _source_options(p, argparse.SUPPRESS)
    p = sub.add_parser("show", help="show one event with its payload and the core's answer")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    _source_options(p, argparse.SUPPRESS)
    p = sub.add_parser("retry", help="send a rejected event again (same idempotency key)")
    p.add_argument("id", type=int)
    _source_options(p, argparse.SUPPRESS)
    p = sub.add_parser("resolve", help="close a rejected event that was handled outside the gateway")
    p.add_argument("id", type=int)
    p.add_argument("--note", required=True, help="how it was handled (kept with the event)")
    _source_options(p, argparse.SUPPRESS)


def _source_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--config / --outbox, accepted before or after the action."""
    parser.add_argument("--config", type=Path, default=default, help="gateway config (its [outbox] path)")
    parser.add_argument("--outbox", type=Path, default=default, help="outbox file, instead of --config")


class UsageProblem(Exception):
    """Bad arguments or config: exit code 2."""


def outbox_path(args: argparse.Namespace) -> Path:
    """The outbox file from --outbox, else from the config (loaded lazily: it pulls pydantic)."""
    if args.outbox is not None:
        return Path(args.outbox)
    if args.config is None:
        raise UsageProblem("posgw queue: give --config FILE or --outbox PATH")
    from gateway.config import ConfigErrors, load_config

    try:
        return load_config(args.config).outbox_path
    except ConfigErrors as exc:
        raise UsageProblem(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    try:
        path = outbox_path(args)
    except UsageProblem as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, path))
    except StorageError as exc:  # OutboxDamaged names `posgw outbox salvage`; OutboxInaccessible the fix
        print(f"posgw queue: {exc}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, sqlite3.DatabaseError) as exc:  # damage met past the open-time check
        print(f"posgw queue: {OutboxDamaged(path, str(exc))}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, path: Path) -> int:
    from gateway.opqueue import format_table, queue_json, row_view
    from gateway.outbox import Outbox
    from gateway.payload import event_to_dict

    outbox = await Outbox.open(path, create=False, recover=False)
    try:
        if args.action == "list" and args.pending:
            return await _list_pending(outbox, args)
        if args.action == "list":
            data = await queue_json(outbox)
            if args.json:
                print(json.dumps(data, ensure_ascii=False, indent=2))
            elif not data["rejected"]:
                print("the operator queue is empty")
            else:
                print(format_table(data["rejected"]))
            return 0
        row = await outbox.get(args.id)
        if row is None:
            print(f"posgw queue: no event with id {args.id} in {path}", file=sys.stderr)
            return 1
        if args.action == "show":
            detail = row_view(row, time.time())
            detail["event"] = event_to_dict(row.event)
            detail["result"] = json.loads(row.result_json) if row.result_json else None
            if args.json:
                print(json.dumps(detail, ensure_ascii=False, indent=2))
            else:
                for name, value in detail.items():
                    if name not in ("event", "result"):
                        print(f"{name:>15}: {value}")
                print(f"{'event':>15}: {json.dumps(detail['event'], ensure_ascii=False, indent=2)}")
                if detail["result"] is not None:
                    print(f"{'result':>15}: {json.dumps(detail['result'], ensure_ascii=False)}")
            return 0
        if row.state != "rejected":
            print(f"posgw queue: event {args.id} is {row.state}, not rejected: nothing to {args.action}",
                  file=sys.stderr)
            return 1
        if args.action == "retry":
            ok = await outbox.retry(args.id)
            message = f"event {args.id} ({row.key}) is pending again; the gateway will resend it"
        else:
            ok = await outbox.resolve(args.id, args.note)
            message = f"event {args.id} ({row.key}) resolved: {args.note}"
        if not ok:
            print(f"posgw queue: event {args.id} changed meanwhile; run `list` again", file=sys.stderr)
            return 1
        print(message)
        return 0
    finally:
        await outbox.close()


async def _list_pending(outbox: Any, args: argparse.Namespace) -> int:
    """Pending and waiting events, oldest first (at most ``--limit`` of each), with the totals."""
    from gateway.opqueue import format_age, format_table, row_view
    from gateway.outbox_db import RowState

    stats = await outbox.stats()
    now = time.time()
    rows = [*await outbox.recent(args.limit, state=RowState.PENDING, oldest_first=True),
            *await outbox.recent(args.limit, state=RowState.WAITING, oldest_first=True)]
    views = [row_view(r, now) for r in rows]
    if args.json:
        print(json.dumps({"pending": stats.pending, "waiting": stats.waiting,
                          "oldest_pending_age_s": round(stats.oldest_pending_age_s, 3),
                          "shown": views}, ensure_ascii=False, indent=2))
        return 0
    if not views:
        print("nothing waits for delivery: every stored event reached the core (or the operator queue)")
        return 0
    print(f"{stats.pending} pending (oldest {format_age(stats.oldest_pending_age_s)}), "
          f"{stats.waiting} waiting for their sale; the oldest {len(views)} shown")
    for v in views:  # the REASON column says the state, and why it waits
        why = v["last_error"] or v["reason"]
        v["reason"] = f"{v['state']}: {why[:60]}" if why else str(v["state"])
    print(format_table(views))
    return 0
