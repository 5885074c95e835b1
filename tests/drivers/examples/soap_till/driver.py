"""The example SOAP till's I/O: one SOAP 1.1 endpoint behind the shared edge (thin; parsing in wire.py).

``POST /v1/soap_till/service`` (text/xml, HTTP Basic): the body element chooses the operation,
Calculate (answered with the gateway's calculation and calc token) or Sale (answered only after
``ctx.submit`` returned). Every refusal, the server's 404/405/500 too, is a SOAP Fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway import http_edge
from gateway.driver import DriverContext, Edge, Refusals
from tests.drivers.examples.soap_till import NAME, wire
from tests.drivers.examples.soap_till.config import Config

REFUSALS = Refusals(
    unauthorized=lambda why: wire.fault("Client", "authenticate with HTTP Basic", error="UNAUTHORIZED"),
    timeout=wire.fault("Client", "the body was not received in time", error="TIMEOUT"),
    too_large=lambda limit: wire.fault("Client", f"the body is larger than {limit} bytes", error="TOO_LARGE"),
    bad_input=wire.bad_input,  # Client (VersionMismatch, MustUnderstand), naming the element
    not_stored=wire.fault("Server", "not stored: resend the same request", error="NOT_STORED"),
    other=wire.other,  # 404, 405, 415: Client; 500: Server
    content_type="text/xml",
    challenge=f'Basic realm="{NAME}"',
)
XML = ("text/xml",)


def create(options: Mapping[str, Any]) -> SoapTill:
    return SoapTill(Config.model_validate(dict(options)))


class SoapTill:
    name = NAME

    def __init__(self, config: Config) -> None:
        self.config = config
        self.edge = Edge(REFUSALS, config.max_body_bytes, config.read_timeout_ms / 1000)
        self._auth = http_edge.BasicAuth({config.user: config.password})

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        service = http_edge.guard(ctx, self.edge, self._service, auth=self._auth, content_types=XML)
        return [web.post("/service", service)]

    async def run(self, ctx: DriverContext) -> None:
        return None  # HTTP only

    async def _service(self, ctx: DriverContext, body: bytes) -> web.Response:
        op = wire.operation(body, max_bytes=self.edge.max_body_bytes)
        if op.name == "Calculate":
            receipt = wire.receipt(op, store_id=self.config.store_id, number_required=False)
            result = await http_edge.calculate(ctx, receipt)
            return http_edge.reply(self.edge, 200, wire.calc_answer(receipt, result))
        event = wire.sale(op, store_id=self.config.store_id)
        duplicate, _ = await http_edge.submit_all(ctx, [event])
        return http_edge.reply(self.edge, 200, wire.sale_answer(duplicate))
