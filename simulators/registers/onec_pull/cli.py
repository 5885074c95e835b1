"""``posgw sim onec_pull``: a fake 1C publication of LoyaltyFeed for the onec_pull driver; publishes a day.

Serves ``/retail/ws/loyalty.1cws`` (WSDL and GetReceipts, HTTP Basic) on --host/--port and publishes
``--receipts`` sales (and returns) over ``--seconds``, with the misbehaviour asked for; then waits
until the gateway acknowledged everything (its AckNo passed the last batch) or ``--wait`` ran out;
then, as every till simulator does (:func:`simulators.registers.queue.check`), waits at most
``--settle-s`` until the gateway (``--gateway``, ``$POSGW_GATEWAY``) holds nothing pending or
waiting and counts what of the run went to its operator queue (``POSGW_ADMIN_KEY``).
Exit status: 0 when every receipt was acknowledged and applied, 1 when some were not (unacknowledged,
in the operator queue, still held by the gateway, or the queue could not be read: pass
``--no-queue-check`` to skip that knowingly), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from decimal import Decimal
from typing import Any

from simulators.registers.onec_pull.publication import FakePublication
from simulators.registers.queue import add_queue_arguments, check


def share(text: str) -> float:
    """A probability 0..1 (as simulators.registers.share; that module is not imported here: it
    pulls in the native simulator)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability 0..1, got {text}")
    return value


TROUBLE = ("html502", "fault", "401", "wsdl401")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default=os.environ.get("POSGW_GATEWAY") or None,
                        help="gateway base URL for the end-of-run check, e.g. http://127.0.0.1:8080 "
                        "(default $POSGW_GATEWAY)")
    add_queue_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--user", default="posgw")
    parser.add_argument("--password", default="", help="the infobase user's password (required)")
    parser.add_argument("--receipts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="publish the receipts over this time")
    parser.add_argument(
        "--wait", type=float, default=60.0, help="then wait this long for the acknowledgements"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--returns", type=share, default=0.1)
    parser.add_argument("--redeliver", type=share, default=0.0, help="publish a receipt twice")
    parser.add_argument("--trouble", default="", help=f"comma-separated, once each: {', '.join(TROUBLE)}")
    parser.add_argument(
        "--cold-start", type=float, default=0.0, help="the first call waits this many seconds"
    )
    parser.add_argument(
        "--restore-after",
        type=int,
        default=0,
        help="after this many batches, restore the infobase one batch back (BatchNo goes backwards)",
    )


def receipt(n: int, rng: random.Random, base: str = "") -> dict[str, Any]:
    price = Decimal(rng.randint(1000, 50000)) / 100
    qty = rng.randint(1, 3)
    return {
        "Id": f"00000000-0000-4000-8000-{n:012d}",
        "Number": f"{n:06d}",
        "DateTime": "2026-03-14T12:00:00+03:00",
        "Store": "SHOP1",
        "POS": "POS1",
        "OperationType": "Return" if base else "Sale",
        "BaseId": base,
        "Phone": rng.choice(["+79160000101", "+79160000102", ""]),
        "Summ": price * qty,
        "SummDiscounted": price * qty,
        "Line": [
            {
                "LineNo": 1,
                "Article": "SKU1",
                "Name": "Товар",
                "Price": price,
                "Quantity": Decimal(qty),
                "Summ": price * qty,
            }
        ],
    }


async def serve(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed if args.seed is not None else random.randrange(1 << 30))
    pub = FakePublication(args.user, args.password, dead_address=False)
    pub.trouble = [t for t in args.trouble.split(",") if t]
    pub.cold(args.cold_start)
    ids: list[str] = []
    started = time.time() - 1.0
    async with pub.serving(args.host, args.port):
        print(f"1C publication: {pub.wsdl_url}", flush=True)
        restored = False
        for n in range(1, args.receipts + 1):
            doc = receipt(n, rng, base=rng.choice(ids) if ids and rng.random() < args.returns else "")
            pub.publish(doc)
            ids.append(doc["Id"])
            if rng.random() < args.redeliver:
                pub.publish(doc)
            if args.restore_after and not restored and pub.last >= args.restore_after:
                pub.restore(pub.last - 1)
                restored = True
            await asyncio.sleep(args.seconds / max(args.receipts, 1))
        for _ in range(int(args.wait / 0.2)):  # the gateway acknowledges with its next call
            if not pub.unread(str(max(pub.acks, default=0))):
                break
            await asyncio.sleep(0.2)
        left = pub.unread(str(max(pub.acks, default=0)))
        queued, problems = await check(args, since=started)  # still serving: the gateway may poll on
    print(
        f"published {args.receipts} receipts in {pub.last} batches; calls {pub.fetches}; "
        f"not acknowledged {len(left)}; operator queue {queued}"
    )
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if left or problems else 0


def run(args: argparse.Namespace) -> int:
    if not args.password or args.receipts < 0:
        print("posgw sim onec_pull: need --password and --receipts >= 0", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))
