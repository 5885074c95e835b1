"""``posgw sim modulkassa``: Modul Kassa registers (+ loyalty plugin) against a gateway; prints a summary.

Exit status: 0 when nothing went wrong, 1 when the report counts errors, 2 on bad arguments, 130 when
Ctrl-C stopped the run (its report printed first). Options and environment variables as every
simulator's (:mod:`simulators.registers.runner`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from simulators.registers import runner
from simulators.registers.modulkassa.till import Misbehaviour, ModulKassaConfig, run_tills

MISBEHAVIOURS = ("duplicate", "resend-after-timeout", "close-before-answer", "out-of-order",
                 "request-every-edit", "bad-token", "missing-token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_run_arguments(parser, tills=4, receipts=100)
    parser.add_argument(
        "--token",
        default=os.environ.get("POSGW_MODULKASSA_TOKEN", ""),
        help="plugin pairing token (X-Gateway-Token; default $POSGW_MODULKASSA_TOKEN)",
    )
    b = parser.add_argument_group("behaviour (probabilities 0..1)")
    b.add_argument("--redeem", type=runner.share, default=0.5)
    b.add_argument("--refunds", type=runner.share, default=0.1)
    b.add_argument("--cancels", type=runner.share, default=0.05)
    runner.add_misbehaviour_arguments(parser, MISBEHAVIOURS)
    runner.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.token or args.tills < 1 or args.receipts < 0:
        print("posgw sim modulkassa: need --token, --tills >= 1 and --receipts >= 0", file=sys.stderr)
        return 2
    mis = Misbehaviour(**runner.misbehaviour_of(args, MISBEHAVIOURS))
    config = ModulKassaConfig(
        redeem_share=args.redeem, refund_share=args.refunds, cancel_share=args.cancels, misbehaviour=mis
    )
    report = asyncio.run(
        run_tills(
            args.gateway,
            args.token,
            tills=args.tills,
            receipts=args.receipts,
            seed=args.seed,
            customers=runner.customers_of(args.customers),
            config=config,
        )
    )
    return runner.print_report(report, args)
