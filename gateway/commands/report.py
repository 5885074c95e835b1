"""``posgw report --core HOST:PORT --from DATE --to DATE``: the core's analytics for a period.

Asks the core's ``GetReport`` (loyalty-rules.md §4) over one gRPC call with a deadline and
prints the figures: money in roubles (two decimals), shares as percentages, per cashier, per
channel and per month. ``--json`` prints the report as one JSON object instead (proto field
names, money in minor units). Exit status 0 on success, 1 when the core cannot answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time

import grpc
from google.protobuf.json_format import MessageToDict

from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

MONEY = ("gross", "paid", "discounts", "saving_vs_direct_discount", "average_receipt",
         "revenue_per_customer", "referral_revenue", "platform_revenue", "certificate_receipts_paid",
         "winback_paid", "money_refunded", "usage_overage")
COUNTS = ("members", "buyers", "receipts", "one_time_customers", "regular_customers",
          "certificates_issued", "winback_customers", "reviews", "points_redeemed", "refunds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core", required=True, metavar="HOST:PORT", help="address of the loyalty core")
    parser.add_argument("--from", dest="start", required=True, type=date.fromisoformat,
                        metavar="YYYY-MM-DD", help="first day of the period (00:00 UTC)")
    parser.add_argument("--to", dest="end", required=True, type=date.fromisoformat,
                        metavar="YYYY-MM-DD", help="day after the period (exclusive, 00:00 UTC)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of the call, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def rub(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}".replace(",", " ")


def pct(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def render(report: pb.Report) -> str:
    lines = [f"{name:<28} {getattr(report, name)}" for name in COUNTS]
    lines += [f"{name:<28} {rub(getattr(report, name))} ₽" for name in MONEY]
    lines.append(f"{'actual_discount':<28} {pct(report.actual_discount_bp)}")
    for source, points in sorted(report.points_issued_by_source.items()):
        lines.append(f"points issued: {source:<13} {points}")
    for c in report.cashiers:
        lines.append(f"cashier {c.cashier_id} {c.cashier_name}: receipts {c.receipts}, with accrual "
                     f"{c.receipts_with_accrual}, with redemption {c.receipts_with_redemption}, "
                     f"registrations {c.registrations}, discount {pct(c.actual_discount_bp)}")
    for ch in report.channels:
        lines.append(f"channel {ch.channel}: new members {ch.new_members}, buyers {ch.buyers}, "
                     f"paid {rub(ch.paid)} ₽")
    for m in report.months:
        lines.append(f"churn {m.month}: {m.churned} of {m.base} ({pct(m.churn_bp)})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("posgw report: --to must be after --from", file=sys.stderr)
        return 2
    request = pb.GetReportRequest()
    getattr(request, "from").FromDatetime(datetime.combine(args.start, time(), UTC))
    request.to.FromDatetime(datetime.combine(args.end, time(), UTC))
    with grpc.insecure_channel(args.core) as channel:
        stub = pb_grpc.LoyaltyCoreStub(channel)  # type: ignore[no-untyped-call]
        try:
            report: pb.Report = stub.GetReport(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"posgw report: the core at {args.core} did not answer: {exc.code().name}: "
                  f"{exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(MessageToDict(report, preserving_proto_field_name=True), ensure_ascii=False))
    else:
        print(render(report))
    return 0
