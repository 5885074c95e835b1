"""A fake 1C:Enterprise publication of the ``LoyaltyFeed`` web service, as the site's 1C extension
would publish it (the contract in drivers/onec_pull/README.md; written from that contract and the
protocol notes, never from the driver's code).

``GET <base>/ws/loyalty.1cws?wsdl`` and ``POST <base>/ws/loyalty.1cws`` behind HTTP Basic (the
infobase user guards the WSDL too). ``GetReceipts(Node, AckNo, MaxCount)`` works like an exchange
plan: every published receipt is a registration on the node; the call first drops the
registrations sent in messages numbered up to ``AckNo`` (numbers above the last one sent are
ignored), then selects up to ``MaxCount`` remaining registrations (unacknowledged ones again: a
redelivery) under a new message number ``BatchNo``, with ``HasMore``. Nothing remaining: the
last number again and no receipts.

Misbehaviour, each on demand: a cold start (the first call after :meth:`cold` waits), HTTP 401 on
the WSDL only, an HTML 502 from the web server in front, a SOAP Fault with 1C's text, a receipt
registered twice, :meth:`restore` (the infobase restored from a backup: message numbers go back and
the receipts sent since are registered again), a ``soap:address`` that does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped]

NS = "urn:pos-gateway:1c-feed:v1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
PATH = "/retail/ws/loyalty.1cws"
RECEIPT_FIELDS = (
    "Id",
    "Number",
    "DateTime",
    "Store",
    "POS",
    "OperationType",
    "BaseId",
    "CardNumber",
    "Phone",
    "Summ",
    "SummDiscounted",
    "PaidByBonus",
    "FiscalSign",
)
LINE_FIELDS = ("LineNo", "Article", "Name", "Price", "Quantity", "Summ")


def _fields(names: tuple[str, ...], types: dict[str, str]) -> str:
    return "".join(
        f'<xs:element name="{n}" type="xs:{types.get(n, "string")}" minOccurs="0"/>' for n in names
    )


def wsdl(address: str) -> bytes:
    money = {
        "Summ": "decimal",
        "SummDiscounted": "decimal",
        "PaidByBonus": "decimal",
        "Price": "decimal",
        "Quantity": "decimal",
        "DateTime": "dateTime",
        "LineNo": "int",
    }
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NS}" name="LoyaltyFeed" targetNamespace="{NS}">
<types><xs:schema targetNamespace="{NS}" elementFormDefault="qualified">
<xs:complexType name="Line"><xs:sequence>{_fields(LINE_FIELDS, money)}</xs:sequence></xs:complexType>
<xs:complexType name="Receipt"><xs:sequence>{_fields(RECEIPT_FIELDS, money)}
<xs:element name="Line" type="tns:Line" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType>
<xs:complexType name="Batch"><xs:sequence><xs:element name="BatchNo" type="xs:long"/>
<xs:element name="HasMore" type="xs:boolean"/>
<xs:element name="Receipt" type="tns:Receipt" minOccurs="0" maxOccurs="unbounded"/>
</xs:sequence></xs:complexType>
<xs:element name="GetReceipts"><xs:complexType><xs:sequence><xs:element name="Node" type="xs:string"/>
<xs:element name="AckNo" type="xs:long"/><xs:element name="MaxCount" type="xs:int"/>
</xs:sequence></xs:complexType>
</xs:element>
<xs:element name="GetReceiptsResponse"><xs:complexType><xs:sequence>
<xs:element name="return" type="tns:Batch"/>
</xs:sequence></xs:complexType></xs:element>
</xs:schema></types>
<message name="GetReceiptsRequestMessage"><part name="parameters" element="tns:GetReceipts"/></message>
<message name="GetReceiptsResponseMessage">
<part name="parameters" element="tns:GetReceiptsResponse"/></message>
<portType name="LoyaltyFeedPortType"><operation name="GetReceipts">
<input message="tns:GetReceiptsRequestMessage"/>
<output message="tns:GetReceiptsResponseMessage"/></operation></portType>
<binding name="LoyaltyFeedSoapBinding" type="tns:LoyaltyFeedPortType">
<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
<operation name="GetReceipts"><soap:operation soapAction="{NS}#LoyaltyFeed:GetReceipts" style="document"/>
<input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation></binding>
<service name="LoyaltyFeed"><port name="LoyaltyFeedSoap" binding="tns:LoyaltyFeedSoapBinding">
<soap:address location="{escape(address)}"/></port></service>
</definitions>
""".encode()


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal | int):
        return str(v)
    return escape(str(v))


def render_receipt(doc: dict[str, Any]) -> str:
    out = ["<m:Receipt>"]
    out += [f"<m:{k}>{_value(doc[k])}</m:{k}>" for k in RECEIPT_FIELDS if doc.get(k) not in (None, "")]
    for ln in doc.get("Line") or []:
        out.append(
            "<m:Line>"
            + "".join(f"<m:{k}>{_value(ln[k])}</m:{k}>" for k in LINE_FIELDS if ln.get(k) not in (None, ""))
            + "</m:Line>"
        )
    out.append("</m:Receipt>")
    return "".join(out)


@dataclass
class _Entry:
    seq: int
    doc: dict[str, Any]
    batch: int = 0  # the message it was last sent in (0: never)


@dataclass
class FakePublication:
    user: str = "posgw"
    password: str = "infobase-secret"
    dead_address: bool = True  # the WSDL's soap:address names a host that does not answer
    url: str = ""
    fetches: int = 0
    last: int = 0
    entries: list[_Entry] = field(default_factory=list)
    sent: list[tuple[int, list[str]]] = field(default_factory=list)  # (BatchNo, ids) in the order sent
    acks: list[int] = field(default_factory=list)
    history: list[_Entry] = field(default_factory=list)  # acknowledged registrations, with their message
    trouble: list[str] = field(
        default_factory=list
    )  # what the next calls get: "html502", "fault", "401", "wsdl401"
    cold_s: float = 0.0
    close_connections: bool = True  # False: keep-alive, as a publication behind IIS/Apache usually does
    _seq: int = 0
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._gate.set()

    # ------------------------------------------------------------------ the vendor side (PollVendor)

    def publish(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            self._seq += 1
            self.entries.append(_Entry(self._seq, doc))

    def stall(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def unread(self, cursor: str | None) -> list[str]:
        ack = int(cursor) if cursor else 0
        return [str(e.doc.get("Id")) for e in self.entries if not (0 < e.batch <= min(ack, self.last))]

    def restore(self, to: int) -> None:
        """The infobase restored to when message ``to`` was the last: later numbers are reused and what
        they carried is registered again."""
        back = [e for e in self.history if e.batch > to]
        self.history = [e for e in self.history if e.batch <= to]
        for e in [*back, *self.entries]:
            if e.batch > to:
                e.batch = 0
        self.entries = sorted([*back, *self.entries], key=lambda e: e.seq)
        self.last = to

    def cold(self, seconds: float) -> None:
        self.cold_s = seconds

    # ------------------------------------------------------------------ HTTP

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
        except ValueError:
            given = ""
        return hmac.compare_digest(given.encode(), f"{self.user}:{self.password}".encode())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        unauthorized = web.Response(
            status=401, text="401 Unauthorized", headers={"WWW-Authenticate": 'Basic realm="1C"'}
        )
        if not self._authorized(request):
            return unauthorized
        if request.method == "GET":
            if "wsdl401" in self.trouble:
                self.trouble.remove("wsdl401")
                return unauthorized
            address = "http://127.0.0.1:9" + PATH if self.dead_address else self.url + PATH
            return web.Response(body=wsdl(address), content_type="text/xml", charset="utf-8")
        self.fetches += 1
        await self._gate.wait()
        if self.cold_s:
            seconds, self.cold_s = self.cold_s, 0.0
            await asyncio.sleep(seconds)
        if self.trouble:
            what = self.trouble.pop(0)
            if what == "html502":
                return web.Response(
                    status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
                )
            if what == "401":
                return unauthorized
            if what == "fault":
                return web.Response(
                    status=500,
                    content_type="text/xml",
                    charset="utf-8",
                    body=(
                        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
                        "<faultcode>soap:Server</faultcode><faultstring>Ошибка при вызове метода контекста "
                        "(ВыбратьИзменения): Конфликт блокировок при выполнении транзакции</faultstring>"
                        "</soap:Fault></soap:Body></soap:Envelope>"
                    ).encode(),
                )
        root = etree.fromstring(
            await request.read(), etree.XMLParser(resolve_entities=False, no_network=True)
        )

        def arg(name: str) -> str:
            found = root.find(f".//{{{NS}}}{name}")
            return "" if found is None or found.text is None else found.text.strip()

        return self.answer(int(arg("AckNo") or 0), int(arg("MaxCount") or 100))

    def answer(self, ack: int, max_count: int) -> web.Response:
        self.acks.append(ack)
        for e in self.entries:  # ВыбратьИзменения after УдалитьРегистрациюИзменений(node, AckNo)
            if 0 < e.batch <= min(ack, self.last):
                self.history.append(e)  # acknowledged: the registration is gone (a backup still has it)
        gone = {id(e) for e in self.history}
        self.entries = [e for e in self.entries if id(e) not in gone]
        chosen = self.entries[:max_count]
        number = self.last
        if chosen:
            self.last += 1
            number = self.last
            for e in chosen:
                e.batch = number
            self.sent.append((number, [str(e.doc.get("Id")) for e in chosen]))
        more = "true" if len(self.entries) > len(chosen) else "false"
        body = (
            f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><m:GetReceiptsResponse xmlns:m="{NS}"><m:return>'
            f"<m:BatchNo>{number}</m:BatchNo><m:HasMore>{more}</m:HasMore>"
            + "".join(render_receipt(e.doc) for e in chosen)
            + "</m:return></m:GetReceiptsResponse></soap:Body></soap:Envelope>"
        )
        return web.Response(body=body.encode(), content_type="text/xml", charset="utf-8")

    @web.middleware
    async def _close(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if self.close_connections:
            response.headers["Connection"] = "close"  # the handler's task ends with the answer
        return response

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[FakePublication]:
        app = web.Application(middlewares=[self._close])
        app.router.add_route("*", PATH, self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound}"
        try:
            yield self
        finally:
            self._gate.set()
            await runner.cleanup()

    @property
    def wsdl_url(self) -> str:
        return self.url + PATH + "?wsdl"
