"""``posgw sim native``: run tills against a gateway's native JSON API and print a summary.

Exit status: 0 when nothing went wrong, 1 when the report counts errors (inconsistent
answers, 4xx, commits given up), 2 on bad arguments, 130 when Ctrl-C stopped the run (the
report of what was done is printed first). ``--json`` prints one JSON object
(the :class:`~.report.SimReport`, with every acknowledgement unless ``--no-acks``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from simulators.registers import runner
from simulators.registers.native.load import run_tills
from simulators.registers.native.till import Misbehaviour, TillConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_run_arguments(parser, tills=8, receipts=500,
                      customers_help="comma-separated customer ids: +79123456789, card:123, app_code:123456")
    parser.add_argument("--api-key", "--token", dest="api_key",
                        default=runner.env_first("POSGW_NATIVE_TOKEN", "POSGW_API_KEY"),
                        help="native API key (default: $POSGW_NATIVE_TOKEN, or the older $POSGW_API_KEY)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="receipts per second over all tills (default 0 = as fast as answered)")
    parser.add_argument("--shift", default=None, help="shift id (default: the start time)")
    parser.add_argument("--register-prefix", default="till",
                        help="register ids are PREFIX-01, PREFIX-02, ...")
    behaviour = parser.add_argument_group("behaviour (probabilities 0..1)")
    behaviour.add_argument("--refunds", type=runner.share, default=0.05, help="refund share after a sale")
    behaviour.add_argument("--cancels", type=runner.share, default=0.02, help="cancel share after a sale")
    behaviour.add_argument("--redeem", type=runner.share, default=0.5,
                           help="customers asking to redeem points")
    behaviour.add_argument("--calc-timeout", type=float, default=2.0, help="seconds (default 2)")
    behaviour.add_argument("--commit-timeout", type=float, default=5.0, help="seconds (default 5)")
    behaviour.add_argument("--retry-for", type=float, default=30.0,
                           help="seconds a sale is retried before the till gives up (default 30)")
    bad = parser.add_argument_group("misbehaviour")
    bad.add_argument("--duplicate", type=runner.share, default=0.0, help="share of sales sent twice")
    bad.add_argument("--resend-after-timeout", type=runner.share, default=0.0,
                     help="share of sales whose first attempt gives up after --resend-timeout-ms")
    bad.add_argument("--resend-timeout-ms", type=int, default=20)
    bad.add_argument("--bad-token", type=runner.share, default=0.0,
                     help="share of requests first sent with a wrong key")
    bad.add_argument("--slow-reads", type=int, default=0, metavar="MS",
                     help="pause per 64-byte response chunk")
    runner.add_output_arguments(parser, acks_switch=True)


def config_from_args(args: argparse.Namespace) -> TillConfig:
    return TillConfig(
        redeem_share=args.redeem, refund_share=args.refunds, cancel_share=args.cancels,
        calc_timeout_s=args.calc_timeout, commit_timeout_s=args.commit_timeout, retry_for_s=args.retry_for,
        misbehaviour=Misbehaviour(
            duplicate=args.duplicate, resend_after_timeout=args.resend_after_timeout,
            resend_timeout_ms=args.resend_timeout_ms, bad_token=args.bad_token, slow_read_ms=args.slow_reads,
        ),
    )


def run(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("posgw sim native: no API key: pass --api-key or set POSGW_NATIVE_TOKEN", file=sys.stderr)
        return 2
    if args.tills < 1 or args.receipts < 0:
        print("posgw sim native: --tills must be >= 1 and --receipts >= 0", file=sys.stderr)
        return 2
    report = asyncio.run(run_tills(
        args.gateway, args.api_key, tills=args.tills, receipts=args.receipts, rate=args.rate, seed=args.seed,
        customers=runner.customers_of(args.customers), config=config_from_args(args),
        shift=args.shift, register_prefix=args.register_prefix,
    ))
    return runner.print_report(report, args)
