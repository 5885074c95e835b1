"""A tiny device driver (test only): a scanner reading fiscal receipt QR codes, with a display.

Each frame is the QR printed on a Russian fiscal receipt,
``t=20250314T1502&s=749.50&fn=7380440700112233&i=5127&fp=2871540093&n=1``; the driver stores it
as a sale (register = fn, one line of ``s`` roubles; key ``example_qr:<fn>:<i>``) and answers on
the same port's customer display: ``OK`` once stored (new or a repeat), ``BAD`` for a frame that
is not such a QR (nothing stored), ``RETRY`` when the write failed (scan again). The whole
device shape: a pure mapping and a ``handle`` given to :func:`gateway.device.run_device`.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.device import PortAbsent, PortOptions, PortWorker, run_device
from gateway.driver import DriverContext
from gateway.errors import BadInput, StorageError
from gateway.receipt import Event, Line, Receipt, sale_event, to_minor

NAME = "example_qr"
MSK = ZoneInfo("Europe/Moscow")


def qr_event(frame: bytes) -> Event:
    """The sale a receipt QR stands for; BadInput when the frame is not one."""
    try:
        query = parse_qs(frame.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise BadInput("not a receipt QR code", "frame") from None
    got = {k: v[0] for k, v in query.items()}
    if not {"t", "s", "fn", "i", "fp"} <= got.keys() or not (got["fn"] + got["i"]).isdigit():
        raise BadInput("t, s, fn, i and fp are required", "frame")
    try:
        at = datetime.strptime(got["t"][:13], "%Y%m%dT%H%M").replace(tzinfo=MSK)
    except ValueError:
        raise BadInput("not a time", "t") from None
    total = to_minor(got["s"], "s")
    receipt = Receipt(got["fn"], got["i"], (Line("1", "", "receipt", total, 1000, total),), at,
                      fiscal_sign=got["fp"], driver=NAME)
    return sale_event(receipt, key=f"{NAME}:{got['fn']}:{got['i']}")


class QrScannerDriver:
    name = NAME
    edge = None

    def __init__(self, port: PortOptions) -> None:
        self.port = port

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return []

    async def run(self, ctx: DriverContext) -> None:
        async def handle(frame: bytes, worker: PortWorker) -> None:
            try:
                new = await ctx.submit(qr_event(frame))
            except BadInput as exc:
                ctx.count("bad_input")
                ctx.log.warning("not a receipt QR", extra={"driver": ctx.name, "error": str(exc)})
                answer = b"BAD\r\n"
            except StorageError:
                ctx.count("storage_error")
                answer = b"RETRY\r\n"
            else:
                ctx.count("committed" if new else "duplicate")
                answer = b"OK\r\n"
            try:
                await worker.write(answer)
            except (PortAbsent, TimeoutError):
                pass  # the display is best effort: the scan is stored (or not) either way

        await run_device(ctx, self.port, handle)
