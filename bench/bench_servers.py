"""Servers for ``bench/gateway_bench.py``, each its own process: ``python bench/bench_servers.py NAME``.

- ``stub-core --port P --stats FILE``: a ``LoyaltyCoreService`` that does no work: Calculate echoes
  the lines back undiscounted, StreamEvents answers every request message at once with a response
  of one result per event (per stream it records events, first receive and last answer time,
  written to FILE as JSON every 0.2 s), GetProgram
  serves seed002, GetBalances an empty snapshot; gRPC health SERVING. Both the gateway and the
  minimal forwarder talk to it, so the ratios isolate what sits in front of it.
- ``forwarder --port P --core ADDR``: the *minimal forwarder*: one aiohttp handler that parses
  the native calculate JSON, makes one ``grpc.aio`` unary Calculate call and returns JSON.
- ``http-echo --port P``: bare aiohttp: parse the JSON body, answer a small JSON object.
- ``bare-stream --core ADDR --events N --rate R`` (a client, not a server): builds N sale
  envelopes, connects to the core, prints ``READY``, and once a line arrives on stdin streams them
  as the sender batches them (:func:`bare_stream`), R events/s at most (0: as fast as it can),
  prints ``DONE <events> <seconds>`` when every one is answered and exits: another process's
  delivery to the same core, for what it costs a till that the gateway serves meanwhile.

Every server prints ``LISTENING <port>`` once it serves, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from aiohttp import web  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

from gateway.convert import event_to_envelope  # noqa: E402
from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb  # noqa: E402
from gateway.core_pb.loyalty.v1 import loyalty_pb2_grpc as pb_grpc  # noqa: E402
from gateway.receipt import CustomerId, Event, IdKind, Line, Receipt, sale_event  # noqa: E402
from gateway.sender import MESSAGE_EVENTS  # noqa: E402

PROGRAM = ROOT / "config" / "programs" / "seed002.toml"


def backlog_events(n: int, shift: str = "backlog") -> list[Event]:
    """``n`` sales of 32 registers; their keys differ by ``shift`` (a repeated key would be a duplicate)."""
    now = datetime.now(UTC)
    line = Line("1", "4600001", "Молоко", 8990, 1000, 8990)
    customer = CustomerId(IdKind.PHONE, "+79990000001")
    return [sale_event(Receipt(register_id=f"bl{i % 32:02d}", receipt_number=str(i), lines=(line,),
                               occurred_at=now, shift=shift, customer=customer, driver="native"))
            for i in range(n)]


async def bare_stream(address: str, events: list[Event], per_message: int = MESSAGE_EVENTS, *,
                      rate: float = 0.0, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """The backlog baseline: the same envelopes as StreamEventsRequests of ``per_message`` events (as the
    sender sends them) on one bare bidirectional stream, at most ``rate`` events/s when given;
    returns once every event is answered (RuntimeError if the stream ends before). ``ready``: awaited
    once connected, before the first send."""
    envelopes = [event_to_envelope(e, i + 1) for i, e in enumerate(events)]
    n = per_message
    batches = [pb.StreamEventsRequest(events=envelopes[i:i + n]) for i in range(0, len(envelopes), n)]

    async def paced() -> AsyncIterator[pb.StreamEventsRequest]:
        began = time.perf_counter()
        for i, batch in enumerate(batches):
            wait = began + i * n / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            yield batch

    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        if ready is not None:
            await ready()
        stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamEvents(paced() if rate > 0 else iter(batches), timeout=300)
        acked = 0
        async for reply in call:
            acked += len(reply.acks)
            if acked == len(envelopes):
                return
        raise RuntimeError(f"the core ended the stream with {acked} of {len(envelopes)} events acknowledged")


async def run_bare_stream(core: str, events: int, rate: float) -> None:
    """The ``bare-stream`` process (module docstring)."""
    backlog = backlog_events(events, f"bare-{time.time_ns()}")
    began: list[float] = []

    async def go() -> None:  # connected: say so, and start once told
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        began.append(time.perf_counter())

    await bare_stream(core, backlog, rate=rate, ready=go)
    print(f"DONE {events} {time.perf_counter() - began[0]:.3f}", flush=True)


def calculation(draft: pb.ReceiptDraft) -> pb.CalculateResponse:
    gross = sum(line.amount for line in draft.lines)
    return pb.CalculateResponse(
        customer_id="1", tier="1", gross=gross, redeemable_base=gross, payable=gross,
        points_to_accrue=gross * 3 // 100 // 100, display_name="Bench B.",
        lines=[pb.LineResult(line_id=line.line_id, paid=line.amount, accrues=True) for line in draft.lines],
    )


class StubCore(pb_grpc.LoyaltyCoreServiceServicer):
    def __init__(self, stats_path: Path | None) -> None:
        from gateway.rules.program import load_program, program_to_json, program_version

        program = load_program(PROGRAM)
        self.program = pb.GetProgramResponse(program_id=program.id, version=program_version(program),
                                  config_json=program_to_json(program))
        self.stats_path = stats_path
        self.streams: list[dict[str, float]] = []
        self._dirty = False

    async def Calculate(self, request: pb.CalculateRequest, context: Any) -> pb.CalculateResponse:
        return calculation(request.draft)

    async def IdentifyCustomer(self, request: pb.IdentifyCustomerRequest,
                               context: Any) -> pb.IdentifyCustomerResponse:
        return pb.IdentifyCustomerResponse(
            customer=pb.Customer(customer_id="1", display_name="Bench B.", tier="1", balance=1000))

    async def GetProgram(self, request: pb.GetProgramRequest, context: Any) -> pb.GetProgramResponse:
        return self.program

    async def GetBalances(self, request: pb.GetBalancesRequest, context: Any) -> pb.GetBalancesResponse:
        return pb.GetBalancesResponse(program_version=self.program.version)

    async def StreamEvents(self, request_iterator: AsyncIterator[pb.StreamEventsRequest],
                           context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        stat = {"events": 0.0, "first": 0.0, "last": 0.0}
        self.streams.append(stat)
        async for batch in request_iterator:
            if not stat["events"]:
                stat["first"] = time.time()
            reply = pb.StreamEventsResponse()
            for env in batch.events:
                ack = reply.acks.add(event_id=env.event_id, register_id=env.register_id,
                                     register_seq=env.register_seq)
                body = env.WhichOneof("body")
                if body == "commit":
                    ack.commit.operation_id = env.event_id
                elif body == "refund":
                    ack.refund.refund_id = env.event_id
                else:
                    ack.cancel.operation_id = env.event_id
            yield reply
            stat["events"] += len(batch.events)
            stat["last"] = time.time()
            self._dirty = True

    async def write_stats(self) -> None:
        while self.stats_path is not None:
            await asyncio.sleep(0.2)
            if self._dirty:
                self._dirty = False
                tmp = self.stats_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"streams": self.streams}))
                tmp.replace(self.stats_path)


async def serve_stub_core(port: int, stats: Path | None, stop: asyncio.Event) -> None:
    server = grpc.aio.server()
    core = StubCore(stats)
    pb_grpc.add_LoyaltyCoreServiceServicer_to_server(core, server)  # type: ignore[no-untyped-call]
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    writer = asyncio.create_task(core.write_stats(), name="stats")
    print(f"LISTENING {port}", flush=True)
    await stop.wait()
    writer.cancel()
    await server.stop(0.5)


async def serve_forwarder(port: int, core: str, stop: asyncio.Event) -> None:
    channel = grpc.aio.insecure_channel(core)
    stub = pb_grpc.LoyaltyCoreServiceStub(channel)  # type: ignore[no-untyped-call]

    async def calculate(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        draft = pb.ReceiptDraft(
            register_id=body["register_id"], receipt_number=body.get("receipt_number", ""),
            customer=pb.CustomerRef(phone=body.get("customer", {}).get("phone", "")),
            lines=[pb.Line(line_id=x["line_id"], sku=x["sku"], name=x.get("name", ""), price=x["price"],
                           qty_milli=x["qty_milli"], amount=x["amount"]) for x in body["lines"]],
        )
        calc = await stub.Calculate(pb.CalculateRequest(draft=draft), timeout=0.3)
        return web.json_response({
            "lines": [{"line_id": x.line_id, "discount": x.discount, "paid": x.paid} for x in calc.lines],
            "redeemed_points": 0, "points_to_accrue": calc.points_to_accrue, "max_points": calc.max_points,
            "payable": calc.payable, "offline": False, "customer": None, "hold_id": "", "message": "",
            "rejection": "",
        })

    await _serve_http([("/v1/native/calculate", calculate)], port, stop)
    await channel.close()


async def serve_http_echo(port: int, stop: asyncio.Event) -> None:
    async def echo(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"key": str(body.get("receipt_number", "")), "duplicate": False})

    await _serve_http([("/v1/native/sales", echo), ("/v1/native/calculate", echo)], port, stop)


async def _serve_http(routes: list[tuple[str, Any]], port: int, stop: asyncio.Event) -> None:
    app = web.Application()
    for path, handler in routes:
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"LISTENING {port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", choices=["stub-core", "forwarder", "http-echo", "bare-stream"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--core", default="")
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    if args.server == "bare-stream":
        asyncio.run(run_bare_stream(args.core, args.events, args.rate))
        return
    if not args.port:
        parser.error(f"{args.server} needs --port")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.server == "stub-core":
            await serve_stub_core(args.port, args.stats, stop)
        elif args.server == "forwarder":
            await serve_forwarder(args.port, args.core, stop)
        else:
            await serve_http_echo(args.port, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
