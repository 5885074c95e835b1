"""``posgw core``: run the reference loyalty core, or check a program file.

- ``posgw core --listen 127.0.0.1:50051 --program config/programs/seed002.toml [--db URL]``
  serves ``loyalty.v1.LoyaltyCoreService`` (plus gRPC health) until SIGTERM / SIGINT. The default
  database is a SQLite file in the platform's user data directory; any SQLAlchemy URL works
  (``postgresql+psycopg://user@host/db`` for a shared deployment).
- ``posgw core --check-program FILE`` prints every problem (file, key, problem, fix) and
  exits 1, or prints a one-line summary and exits 0.
- ``posgw core customer add|list|grant``: customers of a running core without raw gRPC
  ``add`` and ``grant`` call the core's RegisterCustomer and
  IssueGrant at ``--core HOST:PORT``; ``list`` reads the reference core's database (``--db``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.rules.errors import ProgramError

DEFAULT_LISTEN = "127.0.0.1:50051"


def config_error(exc: ProgramError) -> ConfigError:
    """The rules' :class:`~gateway.rules.errors.ProgramError` as the gateway's configuration error
    (same file, key, problem, fix and text): the boundary where the pure rules meet the daemon."""
    return ConfigError(exc.file, exc.key, exc.problem, exc.fix)


def default_db_url() -> str:
    data = Path(platformdirs.user_data_dir("posgw", appauthor=False))
    return f"sqlite:///{data / 'core.db'}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port to serve on (default {DEFAULT_LISTEN})"
    )
    parser.add_argument("--program", help="program file (config/programs/*.toml)")
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in the user data directory)")
    parser.add_argument("--check-program", metavar="FILE", help="validate a program file and exit")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    customer_arguments(sub.add_parser("customer", help="add, list or grant points to customers"))


def check(path: str) -> int:
    from gateway.rules.program import check_program, load_program

    problems = check_program(path)
    if problems:
        for p in problems:
            print(f"{p.file}: {p.key}: {p.problem} (fix: {p.fix})")
        print(f"{len(problems)} problem(s) in {path}", file=sys.stderr)
        return 1
    prog = load_program(path)
    print(
        f"{path}: ok: program {prog.id!r}, {len(prog.tiers)} tier(s), policy {prog.policy}, "
        f"currency {prog.currency}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "customer":
        return customer_run(args)
    if args.check_program:
        return check(args.check_program)
    if not args.program:
        print("posgw core: --program FILE is required (or --check-program FILE)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gateway.rules.program import ProgramError, load_program
    from simulators.core.server import serve

    try:
        program = load_program(args.program)
    except ProgramError as exc:
        print(f"posgw core: {config_error(exc)}", file=sys.stderr)
        return 1
    url = args.db or default_db_url()
    if url.startswith("sqlite:///") and not args.db:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve(args.listen, program, url))
    except OSError as exc:
        print(f"posgw core: cannot serve on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ posgw core customer

GRANT_KINDS = ("manual", "review", "partner", "birthday", "winback", "special_date")


def customer_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="customer_action", metavar="add|list|grant", required=True)
    p = sub.add_parser("add", help="register a customer (RegisterCustomer; a known phone is returned as is)")
    _core_option(p)
    p.add_argument("--phone", default="", help="phone as the cashier types it (normalised by the core)")
    p.add_argument("--card", default="", help="loyalty card number")
    p.add_argument("--name", default="", help="full name")
    p.add_argument("--email", default="")
    p.add_argument("--birth-date", default="", metavar="YYYY-MM-DD")
    p.add_argument("--referrer", default="", help="the inviter's referral code or phone")
    p.add_argument("--channel", default="cashier", help="cashier, referral, app, partner:<name>, self")
    p = sub.add_parser("grant", help="give a customer points (IssueGrant)")
    _core_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="the customer's phone")
    who.add_argument("--card", help="the customer's card")
    p.add_argument("--points", type=int, default=0,
                   help="points to grant (0: the program's figure for --kind)")
    p.add_argument("--kind", choices=GRANT_KINDS, default="manual",
                   help="what the grant is for (default manual)")
    p.add_argument("--platform", default="", help="review platform or partner name")
    p.add_argument("--key", default="", help="idempotency key: the same key again grants nothing more "
                   "(default: a new key per run)")
    p = sub.add_parser("list", help="list the reference core's customers (reads its database)")
    p.add_argument("--db", dest="customer_db", help="the core's SQLAlchemy URL (default: the same file as "
                   "`posgw core` uses)")
    p.add_argument("--search", default="", help="only phones, names or cards containing this")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print JSON")


def _core_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--core", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address of the loyalty core (default {DEFAULT_LISTEN})")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of the call, seconds")
    p.add_argument("--json", action="store_true", help="print the core's answer as JSON")


def customer_run(args: argparse.Namespace) -> int:
    if args.customer_action == "list":
        return _customer_list(args)
    import grpc
    from google.protobuf.json_format import MessageToDict

    from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
    from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

    if args.customer_action == "add" and not (args.phone or args.card):
        print("posgw core customer add: give --phone or --card", file=sys.stderr)
        return 2
    with grpc.insecure_channel(args.core) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            if args.customer_action == "add":
                answer = stub.RegisterCustomer(pb.RegisterCustomerRequest(
                    phone=args.phone, card=args.card, name=args.name, email=args.email,
                    birth_date=args.birth_date, channel=args.channel, referrer_code=args.referrer,
                ), timeout=args.timeout)
            else:
                import uuid

                ref = pb.CustomerRef(phone=args.phone) if args.phone else pb.CustomerRef(card=args.card)
                answer = stub.IssueGrant(pb.IssueGrantRequest(
                    customer=ref, kind=args.kind, points=args.points, platform=args.platform,
                    grant_key=args.key or f"posgw-cli:{uuid.uuid4()}",
                ), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"posgw core customer {args.customer_action}: the core at {args.core} refused or did not "
                  f"answer: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(MessageToDict(answer, preserving_proto_field_name=True), ensure_ascii=False))
    elif args.customer_action == "add":
        verb = "registered" if answer.created else "already registered"
        who = answer.customer
        print(f"{verb}: customer {who.customer_id} {who.phone or args.card} «{who.display_name}», "
              f"tier {who.tier or '-'}, balance {who.balance}"
              + (f", welcome bonus {answer.welcome_points}" if answer.welcome_points else "")
              + f"; referral code {who.referral_code}")
    else:
        expires = answer.expires_at.ToDatetime().date().isoformat() if answer.HasField("expires_at") \
            else "never"
        print(f"{'already granted' if answer.replayed else 'granted'}: {answer.points} points "
              f"({args.kind}) to {args.phone or args.card}, lot {answer.lot_id}, expires {expires}")
    return 0


def _customer_list(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from simulators.core.admin import list_customers

    url = args.customer_db or args.db or default_db_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"posgw core customer list: no core database at {url.removeprefix('sqlite:///')}: "
              "give the --db URL the core was started with", file=sys.stderr)
        return 1
    try:
        rows = list_customers(url, search=args.search, limit=args.limit)
    except SQLAlchemyError as exc:
        print(f"posgw core customer list: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "cards": list(r.cards),
                           "created_at": r.created_at.isoformat()} for r in rows], ensure_ascii=False))
        return 0
    if not rows:
        print("no customers" + (f" matching {args.search!r}" if args.search else ""))
        return 0
    head = ("ID", "PHONE", "NAME", "CARDS", "TIER", "BALANCE", "DEBT", "PURCHASES", "REGISTERED")
    cells = [(str(r.id), r.phone or "-", r.name or "-", ",".join(r.cards) or "-", r.tier or "-",
              str(r.balance), str(r.debt), str(r.purchases),
              r.created_at.date().isoformat() + (" BLOCKED" if r.blocked else "")) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    for line in (head, *cells):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0
