"""``posgw sim onec``: its arguments, its refusal without a password, and a short run against a gateway
whose WSDL it loads with zeep (the exit status says whether every Fiscal was answered 0)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from simulators.registers.onec import cli
from tests.simulators.registers.component import PHONES, running_system


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_misbehaviour_is_a_switch() -> None:
    args = parse(
        "--gateway", "http://127.0.0.1:1", "--password", "p", "--raw-quirks", "0.5", "--many-items", "1"
    )
    assert (args.raw_quirks, args.many_items, args.same_id_resend, args.tills) == (0.5, 1.0, 0.0, 2)


def test_no_password_is_a_usage_error() -> None:
    assert cli.run(parse("--gateway", "http://127.0.0.1:1")) == 2


async def test_a_short_run_exits_0(tmp_path: Path) -> None:
    async with running_system(tmp_path, {"onec": {"user": "1c", "password": "pw"}}) as system:
        args = parse(
            "--gateway",
            system.gateway_url,
            "--password",
            "pw",
            "--receipts",
            "4",
            "--tills",
            "1",
            "--seed",
            "1",
            "--customers",
            ",".join(PHONES),
            "--raw-quirks",
            "0.5",
        )
        args.no_queue_check = True  # the admin API is not configured here
        assert await asyncio.to_thread(cli.run, args) == 0
