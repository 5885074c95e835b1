"""``posgw sim onec``: 1C tills calling the gateway's SOAP service through zeep; prints a summary.

Exit status: 0 when every cheque sent was applied, 1 when the report counts errors (a Fiscal not
answered 0, an answer that does not add up, a document in the gateway's operator queue), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from simulators.registers import runner
from simulators.registers.onec.till import Misbehaviour, OneCConfig, run_tills

MISBEHAVIOURS = (
    "clock-ahead",
    "raw-quirks",
    "same-id-resend",
    "new-id-resend",
    "fiscal-without-soft",
    "over-approval",
    "many-items",
    "bad-password",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_run_arguments(parser, tills=2, receipts=40)
    parser.add_argument(
        "--user",
        default=os.environ.get("POSGW_ONEC_USER", "1c"),
        help="HTTP Basic user of [drivers.onec] (default $POSGW_ONEC_USER or 1c)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("POSGW_ONEC_PASSWORD", ""),
        help="HTTP Basic password (default $POSGW_ONEC_PASSWORD)",
    )
    b = parser.add_argument_group("behaviour (probabilities 0..1)")
    b.add_argument("--redeem", type=runner.share, default=0.4)
    b.add_argument("--refunds", type=runner.share, default=0.15)
    b.add_argument("--cancels", type=runner.share, default=0.05)
    bad = parser.add_argument_group("misbehaviour (probabilities 0..1)")
    for name in MISBEHAVIOURS:
        bad.add_argument(f"--{name}", type=runner.share, default=0.0)
    runner.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.password or args.tills < 1 or args.receipts < 0:
        print(
            "posgw sim onec: need --password (or $POSGW_ONEC_PASSWORD), --tills >= 1 and --receipts >= 0",
            file=sys.stderr,
        )
        return 2
    mis = Misbehaviour(
        **{name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name in MISBEHAVIOURS}
    )
    config = OneCConfig(
        user=args.user,
        password=args.password,
        redeem_share=args.redeem,
        refund_share=args.refunds,
        cancel_share=args.cancels,
        misbehaviour=mis,
    )
    report = asyncio.run(
        run_tills(
            args.gateway,
            config,
            tills=args.tills,
            receipts=args.receipts,
            seed=runner.resolve_seed(args.seed),
            customers=runner.customers_of(args.customers),
        )
    )
    return runner.print_report(report, args)
