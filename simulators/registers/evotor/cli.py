"""``posgw sim evotor``: Evotor terminals (+ plugin + cloud) against a gateway; prints a summary.

Exit status: 0 when nothing went wrong, 1 when the report counts errors, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from simulators.registers.evotor.till import EvotorConfig, Misbehaviour, run_tills


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability 0..1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("POSGW_EVOTOR_TOKEN", ""),
                        help="plugin pairing token (X-Gateway-Token; default $POSGW_EVOTOR_TOKEN)")
    parser.add_argument("--cloud-token", default=os.environ.get("POSGW_EVOTOR_CLOUD_TOKEN", ""),
                        help="Bearer token of the cloud webhooks (empty: no cloud deliveries)")
    parser.add_argument("--tills", type=int, default=4)
    parser.add_argument("--receipts", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--customers", default="", help="comma-separated phones, e.g. +79160000101")
    b = parser.add_argument_group("behaviour (probabilities 0..1)")
    b.add_argument("--redeem", type=share, default=0.5)
    b.add_argument("--refunds", type=share, default=0.1)
    b.add_argument("--cancels", type=share, default=0.05)
    b.add_argument("--cloud", type=share, default=0.3, help="closed receipts the cloud also delivers")
    b.add_argument("--cloud-documents", type=share, default=0.0,
                   help="share of the cloud copies sent as PUT …/documents (REST-v2), not receipts")
    bad = parser.add_argument_group("misbehaviour (probabilities 0..1)")
    for name in ("duplicate", "resend-after-timeout", "close-before-answer", "out-of-order", "calc-twice",
                 "bad-token", "missing-token", "array-bodies"):
        bad.add_argument(f"--{name}", type=share, default=0.0)
    bad.add_argument("--resend-timeout-ms", type=int, default=20)
    bad.add_argument("--slow-reads", type=int, default=0, metavar="MS", help="pause per 64-byte chunk read")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if not args.token or args.tills < 1 or args.receipts < 0:
        print("posgw sim evotor: need --token, --tills >= 1 and --receipts >= 0", file=sys.stderr)
        return 2
    mis = Misbehaviour(
        duplicate=args.duplicate, resend_after_timeout=args.resend_after_timeout,
        resend_timeout_ms=args.resend_timeout_ms, close_before_answer=args.close_before_answer,
        out_of_order=args.out_of_order, calc_twice=args.calc_twice, bad_token=args.bad_token,
        missing_token=args.missing_token, array_bodies=args.array_bodies, slow_read_ms=args.slow_reads,
    )
    config = EvotorConfig(redeem_share=args.redeem, refund_share=args.refunds, cancel_share=args.cancels,
                          cloud_share=args.cloud, document_share=args.cloud_documents, misbehaviour=mis)
    report = asyncio.run(run_tills(
        args.gateway, args.token, tills=args.tills, receipts=args.receipts, seed=args.seed,
        customers=[c.strip() for c in args.customers.split(",") if c.strip()],
        cloud_token=args.cloud_token, config=config,
    ))
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.summary())
    return 1 if report.errors else 0
