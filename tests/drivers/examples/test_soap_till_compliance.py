"""The push compliance suite against the example SOAP 1.1 till (tests/drivers/examples/soap_till/),
run in the real daemon like the JSON drivers: the toolkit's push shape holds for SOAP (HTTP Basic,
text/xml, one endpoint whose body element picks the operation, every refusal a SOAP Fault).

The example lives under tests/, so the registry (derived from drivers/) does not know it: the
autouse fixture registers it under its NAME for each test. The requests below are written by hand,
as a till would send them; the answers are read with the hardened parser the driver uses.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway import xml_fields
from gateway.driver import REGISTRY
from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request, calc_token, running
from tests.drivers.examples.soap_till import NAME, wire

TARGET = "tests.drivers.examples.soap_till.driver:create"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
NS = "urn:posgw:example:soap-till:v1"
OPTIONS = {"user": "till", "password": "till-secret"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


HEADERS = {"Authorization": basic("till", "till-secret"), "Content-Type": "text/xml; charset=utf-8",
           "SOAPAction": '""'}
LINES = ("<t:Lines>"
         "<t:Line><t:Sku>MILK</t:Sku><t:Name>Milk</t:Name><t:Price>89.90</t:Price><t:Quantity>1</t:Quantity></t:Line>"
         "<t:Line><t:Sku>BREAD</t:Sku><t:Price>45.00</t:Price><t:Quantity>2</t:Quantity></t:Line>"
         "</t:Lines>")
HEAD = "<t:Till>T1</t:Till><t:At>2026-03-14T12:00:00+03:00</t:At><t:Card>2000012345</t:Card>"


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(REGISTRY, NAME, TARGET)
    yield


def envelope(inner: str, *, ns: str = NS, soap_ns: str = SOAP_NS, prolog: str = "") -> bytes:
    return (f'{prolog}<soap:Envelope xmlns:soap="{soap_ns}" xmlns:t="{ns}"><soap:Body>{inner}'
            "</soap:Body></soap:Envelope>").encode()


def calculate(lines: str = LINES) -> bytes:
    return envelope(f"<t:Calculate>{HEAD}{lines}</t:Calculate>")


def sale(token: str = "", *, lines: str = LINES, ns: str = NS, op: str = "Sale") -> bytes:
    token_el = f"<t:CalcToken>{token}</t:CalcToken>" if token else ""
    return envelope(f"<t:{op}>{HEAD}<t:ReceiptId>42</t:ReceiptId>{lines}{token_el}</t:{op}>", ns=ns)


def post(body: bytes, headers: dict[str, str] = HEADERS, note: str = "", path: str = "/service") -> Request:
    return Request(path, body, dict(headers), note=note)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  + sale().replace(b"<t:Sku>MILK</t:Sku>", b"<t:Sku>&lol3;</t:Sku>"))
MUST_UNDERSTAND = b'<soap:Header><t:Tx soap:mustUnderstand="1"/></soap:Header><soap:Body>'
NEGATIVE_QTY = LINES.replace("<t:Quantity>1</t:Quantity>", "<t:Quantity>-1</t:Quantity>")


def answer(reply: Reply, tag: str) -> Any:
    """The body element of a SOAP answer, after checking the envelope and the content type."""
    assert reply.headers.get("Content-Type", "").startswith("text/xml"), reply
    root = xml_fields.parse(reply.body)
    assert root.tag == f"{{{SOAP_NS}}}Envelope", reply
    body = xml_fields.child(root, "Body", "Envelope")
    assert body is not None
    found = list(body)
    assert len(found) == 1 and xml_fields.name(found[0]) == tag, reply
    return found[0]


def fault(reply: Reply) -> tuple[str, str, str, str]:
    """(faultcode, faultstring, detail code, detail field) of a Fault answer."""
    node = answer(reply, "Fault")
    assert node.tag == f"{{{SOAP_NS}}}Fault"
    error = xml_fields.child(xml_fields.child(node, "detail", "Fault"), "Error", "Fault/detail")
    return (xml_fields.child_text(node, "faultcode", "Fault", required=True),
            xml_fields.child_text(node, "faultstring", "Fault", required=True),
            xml_fields.child_text(error, "Code", "Error", required=True),
            xml_fields.child_text(error, "Field", "Error"))


class SoapTillAdapter(Adapter):
    name = NAME

    def options(self) -> dict[str, Any]:
        return dict(OPTIONS)

    def calc(self) -> Request:
        return post(calculate())

    def commits(self) -> dict[str, Request]:
        return {"sale": post(sale(calc_token(register_id="T1")))}

    def sale_with_token(self, token: str) -> Request:  # the suite's calc-token checks (being added)
        return post(sale(token))

    def bad_inputs(self) -> list[Request]:
        return [
            post(b"<soap:Envelope xmlns:soap", note="malformed XML"),
            post(BILLION_LAUGHS, note="a DTD declaring entities (billion laughs)"),
            post(sale(ns="urn:someone-else"), note="the operation in a wrong namespace"),
            post(sale(op="Refund"), note="an unknown operation"),
            post(sale(lines=NEGATIVE_QTY), note="a negative quantity"),
            post(sale(lines="<t:Lines/>"), note="no lines"),
            post(sale(lines=LINES.replace("89.90", "89,90")), note="a price that is not a decimal"),
            post(envelope(""), note="an empty Body"),
            post(sale().replace(b"<t:ReceiptId>42</t:ReceiptId>", b""), note="no receipt id"),
            post(envelope("<t:Sale/>", soap_ns=SOAP12_NS), note="a SOAP 1.2 envelope"),
            post(sale("c1.forged.token"), note="a forged calc token"),
            post(sale(), {**HEADERS, "Content-Type": "application/json"}, note="wrong media type"),
        ]

    def unauthorized(self) -> list[Request]:
        no_auth = {k: v for k, v in HEADERS.items() if k != "Authorization"}
        return [
            post(sale(), no_auth, note="no Basic auth"),
            post(sale(), {**HEADERS, "Authorization": basic("till", "wrong")}, note="wrong password"),
            post(calculate(), {**HEADERS, "Authorization": basic("other", "till-secret")}, note="wrong user"),
            post(sale(), {**HEADERS, "Authorization": "Bearer till-secret"}, note="not Basic"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        node = answer(reply, "SaleResponse")
        assert xml_fields.child_text(node, "Accepted", "SaleResponse") == "true", reply
        assert xml_fields.child_text(node, "Duplicate", "SaleResponse") == str(duplicate).lower(), reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        node = answer(reply, "CalculateResponse")

        def read(tag: str) -> str:
            return xml_fields.child_text(node, tag, "CalculateResponse")

        assert read("Offline") == str(not online).lower(), reply
        assert read("Discount") == "0.00", reply  # the stub core gives no discount
        assert read("CalcToken").startswith("c1."), reply
        rows = xml_fields.children(xml_fields.child(node, "Lines", "CalculateResponse"), "Line")
        got = [(xml_fields.child_text(r, "Number", "Line"), xml_fields.child_text(r, "Discount", "Line"),
                xml_fields.child_text(r, "Paid", "Line")) for r in rows]
        assert got == [("1", "0.00", "89.90"), ("2", "0.00", "90.00")], got
        assert "2000012345" not in read("Slip"), reply  # the card is masked on the slip
        if online:
            assert read("Slip").startswith("Карта *2345"), reply

    def check_error(self, reply: Reply) -> None:
        code, text, error, _ = fault(reply)
        expected = {"soap:Server"} if reply.status >= 500 else {"soap:Client", "soap:VersionMismatch"}
        assert code in expected and text and error.isupper(), reply


class TestSoapTillCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = SoapTillAdapter()


# ------------------------------------------------------------------ beyond the suite


async def test_forged_or_altered_calc_token_in_a_sale_is_a_fault_and_nothing_stored(tmp_path: Path) -> None:
    good = calc_token(register_id="T1")
    at = len(good) - 6  # inside the MAC: its last character also holds padding bits, which read() ignores
    altered = good[:at] + ("A" if good[at] != "A" else "B") + good[at + 1:]
    async with running(NAME, OPTIONS, tmp_path) as gw:
        for token in ("c1.forged.token", altered, "not-a-token"):
            reply = await gw.send(post(sale(token)))
            assert reply.status == 400, (token, reply)
            code, _, error, field = fault(reply)
            assert (code, error, field) == ("soap:Client", "BAD_INPUT", "calc_token"), reply
        assert gw.rows() == []
        signed = await gw.send(post(sale(good)))  # the same sale with a token this gateway issued
        SoapTillAdapter().check_ok("sale", signed, duplicate=False)
        assert len(gw.rows()) == 1


async def test_the_calc_token_of_a_calculate_is_accepted_by_the_sale(tmp_path: Path) -> None:
    async with running(NAME, OPTIONS, tmp_path) as gw:
        node = answer(await gw.send(post(calculate())), "CalculateResponse")
        token = xml_fields.child_text(node, "CalcToken", "CalculateResponse", required=True)
        SoapTillAdapter().check_ok("sale", await gw.send(post(sale(token))), duplicate=False)
        assert [key for key, _ in gw.rows()] == ["soap_till:T1:42"]


async def test_every_refusal_is_a_soap_fault_with_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object) -> bytes:
        raise RuntimeError("a bug in the driver (test)")

    cases = [
        (post(sale(), path="/nope"), 404, "soap:Client", "NOT_FOUND"),
        (Request("/service", b"", dict(HEADERS), method="GET"), 405, "soap:Client", "METHOD_NOT_ALLOWED"),
        (post(sale(), {**HEADERS, "Content-Type": "application/soap+xml"}), 415, "soap:Client",
         "UNSUPPORTED_MEDIA_TYPE"),
        (post(envelope("<t:Sale/>" + " " * 4096)), 413, "soap:Client", "TOO_LARGE"),
        (post(envelope("<t:Sale/>", soap_ns=SOAP12_NS)), 400,
         "soap:VersionMismatch", "BAD_INPUT"),
        (post(envelope("<t:Sale/>").replace(b"<soap:Body>", MUST_UNDERSTAND)), 400, "soap:MustUnderstand",
         "BAD_INPUT"),
        (post(sale(), {**HEADERS, "Authorization": basic("till", "no")}), 401, "soap:Client", "UNAUTHORIZED"),
        (post(calculate(), note="a bug while answering"), 500, "soap:Server", "INTERNAL"),
    ]
    async with running(NAME, dict(OPTIONS, max_body_bytes=2048), tmp_path) as gw:
        monkeypatch.setattr(wire, "calc_answer", boom)
        for req, status, code, error in cases:
            reply = await gw.send(req)
            assert reply.status == status, (req.note or req.path, reply)
            assert fault(reply)[::2] == (code, error), reply
            if status == 401:
                assert reply.headers["WWW-Authenticate"] == f'Basic realm="{NAME}"'
        assert gw.rows() == []


async def test_a_slow_body_is_a_408_fault(tmp_path: Path) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield sale()[:40]
        await asyncio.sleep(2)
        yield sale()[40:]

    async with running(NAME, dict(OPTIONS, read_timeout_ms=200), tmp_path) as gw:
        url = f"{gw.base}/v1/{NAME}/service"
        async with gw.session.post(url, data=trickle(), headers=HEADERS) as resp:
            reply = Reply(resp.status, await resp.read(), dict(resp.headers))
        assert reply.status == 408, reply
        assert fault(reply)[::2] == ("soap:Client", "TIMEOUT")
        assert gw.rows() == []


def test_driver_py_is_under_100_lines() -> None:
    lines = (Path(__file__).parent / "soap_till" / "driver.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 100, len(lines)
