"""``posgw core``: run the reference loyalty core, or check a program file.

- ``posgw core --listen 127.0.0.1:50051 --program config/programs/seed002.toml [--db URL]``
  serves ``loyalty.v1.LoyaltyCore`` (plus gRPC health) until SIGTERM / SIGINT. The default
  database is a SQLite file in the platform's user data directory; any SQLAlchemy URL works
  (``postgresql+psycopg://user@host/db`` for a shared deployment).
- ``posgw core --check-program FILE`` prints every problem (file, key, problem, fix) and
  exits 1, or prints a one-line summary and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
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
