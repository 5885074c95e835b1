"""``posgw report --core HOST:PORT --from DATE --to DATE``: the core's analytics for a period.

Asks the core's ``GetReport`` (loyalty-rules.md §4) over one gRPC call with a deadline and
prints the figures: money in roubles (two decimals), shares as percentages, per cashier, per
channel and per month. ``--json`` prints the report as one JSON object instead (proto field
names, money in minor units). Exit status 0 on success, 1 when the core cannot answer.

``posgw report day|shift|cashier --config FILE (or --outbox PATH) [--from DATE] [--to DATE]
[--format table|csv|json] [--chart FILE.svg]``: the shop owner's figures from the gateway's own
records (its outbox: receipts as the tills sent them and the core's answer to each), one row per
day, per register shift or per cashier: receipts, receipts with loyalty (the core knew the
customer) and their share, points accrued and redeemed, the money taken off by loyalty and the
actual discount (that money over the receipts' total), receipts answered offline, refunds the
core applied, and the documents (sales, refunds, cancels) not applied at the core, by state:
``pending`` (on their way), ``waiting`` (a refund or cancel whose sale the core does not know
yet), ``rejected`` (refused: in the operator queue, see ``posgw queue``). Loyalty figures and
refunds count only what the core applied; a sale not applied still counts as a receipt. Days are the
till's own receipt dates, in this machine's time zone; the period is ``[--from, --to)``,
by default the last 7 days for ``day`` and today for the others. The outbox keeps delivered
receipts ``keep_delivered_s`` (7 days by default): older periods are the core's report. ``--chart``
writes an SVG of daily receipts (bars) and actual discount (line). Reads the file only.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import html
import io
import json
import sqlite3
import sys
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

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
    parser.add_argument("--core", metavar="HOST:PORT", help="address of the loyalty core (its own report)")
    _period(parser, None)
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of the call, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sub = parser.add_subparsers(dest="view", metavar="day|shift|cashier")
    for view, what in (("day", "per day"), ("shift", "per register shift"), ("cashier", "per cashier")):
        p = sub.add_parser(view, help=f"the gateway's own figures {what} (from its outbox)")
        p.add_argument("--config", type=Path, help="gateway config (its [outbox] path)")
        p.add_argument("--outbox", type=Path, help="outbox file, instead of --config")
        _period(p, argparse.SUPPRESS)
        p.add_argument("--format", choices=("table", "csv", "json"), default="table")
        p.add_argument("--chart", type=Path, metavar="FILE.svg",
                       help="also write an SVG chart of daily receipts and actual discount")


def _period(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--from", dest="start", default=default, type=date.fromisoformat,
                        metavar="YYYY-MM-DD", help="first day of the period")
    parser.add_argument("--to", dest="end", default=default, type=date.fromisoformat,
                        metavar="YYYY-MM-DD", help="day after the period (exclusive)")


def rub(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}".replace(",", " ")


def pct(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def render(report: pb.GetReportResponse) -> str:
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
    if getattr(args, "view", None):
        return run_view(args)
    if not args.core or args.start is None or args.end is None:
        print("posgw report: give --core HOST:PORT --from DATE --to DATE (the core's report), "
              "or day|shift|cashier (the gateway's own figures)", file=sys.stderr)
        return 2
    if args.end <= args.start:
        print("posgw report: --to must be after --from", file=sys.stderr)
        return 2
    request = pb.GetReportRequest()
    getattr(request, "from").FromDatetime(datetime.combine(args.start, time(), UTC))
    request.to.FromDatetime(datetime.combine(args.end, time(), UTC))
    with grpc.insecure_channel(args.core) as channel:
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            report: pb.GetReportResponse = stub.GetReport(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"posgw report: the core at {args.core} did not answer: {exc.code().name}: "
                  f"{exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(MessageToDict(report, preserving_proto_field_name=True), ensure_ascii=False))
    else:
        print(render(report))
    return 0


# ------------------------------------------------------------------ the gateway's own figures

LATE_S = 3 * 86400.0  # a receipt may be stored this long after its date (a till offline for days)


@dataclass
class Figures:
    """One row of ``posgw report day|shift|cashier``; money in kopecks."""

    group: str
    receipts: int = 0
    with_loyalty: int = 0
    points_accrued: int = 0
    points_redeemed: int = 0
    total: int = 0
    loyalty_discount: int = 0
    offline: int = 0
    refunds: int = 0  # refunds the core applied (delivered)
    pending: int = 0  # documents on their way to the core
    waiting: int = 0  # refunds / cancels set aside until the core knows their sale
    rejected: int = 0  # documents the core refused: the operator queue

    @property
    def not_delivered(self) -> int:
        """Documents not applied at the core: pending + waiting + rejected."""
        return self.pending + self.waiting + self.rejected

    @property
    def loyalty_share_pct(self) -> float:
        return round(100 * self.with_loyalty / self.receipts, 1) if self.receipts else 0.0

    @property
    def actual_discount_pct(self) -> float:
        return round(100 * self.loyalty_discount / self.total, 2) if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "not_delivered": self.not_delivered,
                "loyalty_share_pct": self.loyalty_share_pct, "actual_discount_pct": self.actual_discount_pct}


def local_day(moment: datetime) -> date:
    return moment.astimezone().date()


def group_of(view: str, row: Any) -> str:
    """The row's group: its local day, ``register / shift`` or ``cashier id name``."""
    ev = row.event
    receipt = ev.receipt
    if view == "day":
        return local_day(ev.occurred_at).isoformat()
    if view == "shift":
        return f"{ev.register_id} / shift {(receipt.shift if receipt is not None else '') or '-'}"
    cashier_id = (receipt.cashier_id if receipt is not None else "") or ev.cashier_id
    name = (receipt.cashier_name if receipt is not None else "") or ev.cashier_name
    return f"{cashier_id or '-'} {name}".strip()


NOT_APPLIED = ("pending", "waiting", "rejected")  # outbox row states: a Figures field each


def summarise(rows: Any, view: str, start: date, end: date) -> list[Figures]:
    """Figures per group for the events whose receipt date is in ``[start, end)`` (sorted by group)."""
    from gateway.status_page import outcome

    groups: dict[str, Figures] = {}
    rows = list(rows)
    sale_group = {row.key: group_of(view, row) for row in rows if row.kind == "sale"}
    for row in rows:
        ev = row.event
        if not start <= local_day(ev.occurred_at) < end or str(row.state) == "resolved":
            continue
        # a refund counts where its sale does (it carries no shift or cashier of its own)
        group = sale_group.get(ev.sale_key, "") if view != "day" and row.kind != "sale" else ""
        group = group or group_of(view, row)
        f = groups.setdefault(group, Figures(group))
        state = str(row.state)
        if state in NOT_APPLIED:  # any kind: counted by its state, never as loyalty or a refund
            setattr(f, state, getattr(f, state) + 1)
        if row.kind == "refund":
            f.refunds += state == "delivered"
            continue
        if row.kind != "sale" or ev.receipt is None:
            continue
        o = outcome(row)
        f.receipts += 1
        f.total += o.total
        f.offline += ev.offline
        if state != "delivered":
            continue
        f.with_loyalty += o.known
        f.points_accrued += o.accrued
        f.points_redeemed += o.redeemed
        f.loyalty_discount += o.discount
    return [groups[k] for k in sorted(groups)]


def total_of(figures: list[Figures]) -> Figures:
    out = Figures("total")
    for f in figures:
        for fld in fields(Figures):
            if fld.name != "group":
                setattr(out, fld.name, getattr(out, fld.name) + getattr(f, fld.name))
    return out


COLUMNS = (("group", ""), ("receipts", "receipts"), ("with_loyalty", "loyalty"),
           ("loyalty_share_pct", "share %"), ("points_accrued", "accrued"), ("points_redeemed", "redeemed"),
           ("total", "total ₽"), ("loyalty_discount", "discount ₽"), ("actual_discount_pct", "discount %"),
           ("offline", "offline"), ("refunds", "refunds"), ("pending", "pending"), ("waiting", "waiting"),
           ("rejected", "rejected"))


def table(view: str, figures: list[Figures]) -> str:
    head = [view if k == "group" else h for k, h in COLUMNS]
    rows = []
    for f in [*figures, total_of(figures)]:
        d = f.as_dict()
        rows.append([rub(d[k]) if k in ("total", "loyalty_discount") else
                     f"{d[k]:.1f}" if k == "loyalty_share_pct" else
                     f"{d[k]:.2f}" if k == "actual_discount_pct" else str(d[k]) for k, _ in COLUMNS])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    def line(cells: list[str]) -> str:
        return "  ".join(v.rjust(w) if i else v.ljust(w)
                         for i, (v, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines = [line(head), *(line(r) for r in rows)]
    return "\n".join(lines)


def to_csv(figures: list[Figures]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [k for k, _ in COLUMNS]
    writer.writerow(names)
    for f in figures:
        d = f.as_dict()
        writer.writerow([d[k] for k in names])
    return out.getvalue()


def chart_svg(days: list[Figures], title: str = "Receipts per day and actual discount") -> str:
    """Bars: receipts per day (left axis); line: actual discount % (right axis). Self-contained SVG."""
    w, h, left, right, top, bottom = 720, 320, 50, 60, 40, 60
    plot_w, plot_h = w - left - right, h - top - bottom
    n = max(1, len(days))
    most = max([f.receipts for f in days] + [1])
    most_pct = max([f.actual_discount_pct for f in days] + [1.0])
    step = plot_w / n
    e = html.escape
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
             "font-family='sans-serif' font-size='11'>",
             f"<rect width='{w}' height='{h}' fill='white'/>",
             f"<text x='{w / 2}' y='20' text-anchor='middle' font-size='14'>{e(title)}</text>",
             f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' "
             "stroke='#333'/>",
             f"<text x='{left - 6}' y='{top + 4}' text-anchor='end'>{most}</text>",
             f"<text x='{left - 6}' y='{top + plot_h}' text-anchor='end'>0</text>",
             f"<text x='{left + plot_w + 6}' y='{top + 4}'>{most_pct:.1f} %</text>",
             f"<text x='{left + plot_w + 6}' y='{top + plot_h}'>0 %</text>"]
    points = []
    for i, f in enumerate(days):
        bar_h = plot_h * f.receipts / most
        x = left + i * step + step * 0.15
        parts.append(f"<rect class='receipts' data-day='{e(f.group)}' data-receipts='{f.receipts}' "
                     f"x='{x:.1f}' y='{top + plot_h - bar_h:.1f}' width='{step * 0.7:.1f}' "
                     f"height='{bar_h:.1f}' fill='#7aa6d6'/>")
        parts.append(f"<text x='{x + step * 0.35:.1f}' y='{top + plot_h + 14}' text-anchor='middle'>"
                     f"{e(f.group[5:] if len(f.group) == 10 else f.group)}</text>")
        cy = top + plot_h - plot_h * f.actual_discount_pct / most_pct
        points.append(f"{x + step * 0.35:.1f},{cy:.1f}")
    if points:
        parts.append(f"<polyline class='discount' points='{' '.join(points)}' fill='none' stroke='#d0542c' "
                     "stroke-width='2'/>")
    parts.append(f"<text x='{left}' y='{h - 12}' fill='#7aa6d6'>■ receipts</text>"
                 f"<text x='{left + 90}' y='{h - 12}' fill='#d0542c'>— actual discount %</text></svg>")
    return "".join(parts)


def run_view(args: argparse.Namespace) -> int:
    from gateway.commands.queue import UsageProblem, outbox_path
    from gateway.errors import StorageError

    today = datetime.now().astimezone().date()
    start = args.start or (today - timedelta(days=6) if args.view == "day" else today)
    end = args.end or today + timedelta(days=1)
    if end <= start:
        print("posgw report: --to must be after --from", file=sys.stderr)
        return 2
    try:
        path = outbox_path(args)
    except UsageProblem as exc:
        print(str(exc).replace("posgw queue", "posgw report"), file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_read(path, start, end))
    except (StorageError, sqlite3.DatabaseError) as exc:
        print(f"posgw report: {exc}", file=sys.stderr)
        return 1
    figures = summarise(rows, args.view, start, end)
    if args.format == "json":
        print(json.dumps({"view": args.view, "from": start.isoformat(), "to": end.isoformat(),
                          "rows": [f.as_dict() for f in figures], "total": total_of(figures).as_dict()},
                         ensure_ascii=False, indent=2))
    elif args.format == "csv":
        print(to_csv(figures), end="")
    elif figures:
        print(f"{args.view} figures from {start} to {end - timedelta(days=1)} (the gateway's records)")
        print(table(args.view, figures))
    else:
        print(f"no receipts from {start} to {end - timedelta(days=1)} in {path}")
    if args.chart is not None:
        days = figures if args.view == "day" else summarise(rows, "day", start, end)
        args.chart.write_text(chart_svg(days), encoding="utf-8")
        print(f"chart written to {args.chart}", file=sys.stderr)
    return 0


async def _read(path: Path, start: date, end: date) -> list[Any]:
    from gateway.outbox import Outbox

    since = datetime.combine(start, time()).astimezone().timestamp() - 86400
    until = datetime.combine(end, time()).astimezone().timestamp() + LATE_S
    outbox = await Outbox.open(path, create=False, recover=False)
    try:
        return await outbox.recent(10_000_000, since=since, until=until)
    finally:
        await outbox.close()
