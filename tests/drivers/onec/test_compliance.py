"""The push compliance suite applied to the 1C driver: Fiscal Sale / Return / Rollback in the
Manzana POS processing shape, HTTP Basic, every refusal a SOAP Fault."""

from __future__ import annotations

from typing import Any, ClassVar

from gateway import xml_fields
from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request
from tests.drivers.onec import envelopes as e

NAME = "onec"


def post(body: bytes, headers: dict[str, str] = e.HEADERS, note: str = "") -> Request:
    return Request(e.PATH, body, dict(headers), note=note)


def answer(reply: Reply, tag: str = "ChequeResponse") -> Any:
    """The one response element of a ProcessRequestResponse (after checking the envelope)."""
    assert reply.headers.get("Content-Type", "").startswith(("text/xml", "application/soap+xml")), reply
    root = xml_fields.parse(reply.body)
    body = xml_fields.child(root, "Body", "Envelope")
    result = xml_fields.child(
        xml_fields.child(body, "ProcessRequestResponse", "Body"), "ProcessRequestResult", "R"
    )
    [node] = [c for c in result if isinstance(c.tag, str)]
    assert xml_fields.name(node) == tag and xml_fields.namespace(node) == e.NS, reply
    return node


def read(node: Any, tag: str) -> str:
    return xml_fields.child_text(node, tag, xml_fields.name(node))


def fault(reply: Reply) -> tuple[str, str, str]:
    """(faultcode, faultstring, detail code) of a SOAP 1.1 Fault answer."""
    root = xml_fields.parse(reply.body)
    node = xml_fields.child(xml_fields.child(root, "Body", "Envelope"), "Fault", "Body")
    error = xml_fields.child(xml_fields.child(node, "detail", "Fault"), "Error", "detail")
    return read(node, "faultcode"), read(node, "faultstring"), read(error, "Code")


class OneCAdapter(Adapter):
    name = NAME

    def options(self) -> dict[str, Any]:
        return dict(e.OPTIONS)

    def calc(self) -> Request:
        return post(e.envelope(e.cheque("Soft")))

    def commits(self) -> dict[str, Request]:
        return {
            "sale": post(e.envelope(e.cheque())),
            "refund": post(
                e.envelope(e.cheque(op="Return", number="43", reference=e.reference(), items=e.ITEMS[:1]))
            ),
            "cancel": post(
                e.envelope(e.cheque(op="Rollback", number="44", reference=e.reference(), items=()))
            ),
        }

    def sale_with_token(self, token: str) -> Request:
        return post(e.envelope(e.cheque(extra=e.token_attribute(token))))

    def bad_inputs(self) -> list[Request]:
        plain = e.envelope(e.cheque())
        return [
            post(b"<s:Envelope xmlns:s", note="malformed XML"),
            post(b"", note="an empty body (NTLM's first POST)"),
            post(e.BILLION_LAUGHS, note="a DTD declaring entities (billion laughs)"),
            post(e.EXTERNAL_ENTITY, note="an external entity"),
            post(e.DEEP, note="nesting deeper than the parser allows"),
            post(e.INVALID_UTF8, note="invalid UTF-8"),
            post(e.envelope(e.cheque(), ns="urn:someone-else"), note="ProcessRequest in another namespace"),
            post(
                e.envelope(e.cheque().replace("ChequeRequest", "OfferRequest")), note="an unsupported request"
            ),
            post(e.envelope(), note="an empty request"),
            post(plain.replace(e.SOAP11.encode(), b"urn:not-soap"), note="another envelope version"),
            post(e.MUST_UNDERSTAND, note="a mustUnderstand header"),
            post(plain, {**e.HEADERS, "Content-Type": "application/json"}, note="wrong media type"),
        ]

    def unauthorized(self) -> list[Request]:
        no_auth = {k: v for k, v in e.HEADERS.items() if k != "Authorization"}
        body = e.envelope(e.cheque())
        return [
            post(body, no_auth, note="no Basic auth"),
            post(body, {**e.HEADERS, "Authorization": e.basic(password="wrong")}, note="wrong password"),
            post(
                e.envelope(e.cheque("Soft")),
                {**e.HEADERS, "Authorization": e.basic("other")},
                note="wrong user",
            ),
            post(body, {**e.HEADERS, "Authorization": "Bearer onec-secret"}, note="not Basic"),
            post(
                body,
                {
                    **e.HEADERS,
                    "Authorization": "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==",
                },
                note="an NTLM handshake",
            ),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        node = answer(reply)
        assert read(node, "ReturnCode") == "0", reply
        assert read(node, "RequestID") == "R-1", reply
        assert int(read(node, "TransactionID")) > 0, reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        node = answer(reply)
        assert read(node, "ReturnCode") == "0", reply
        assert (read(node, "Summ"), read(node, "SummDiscounted")) == ("179.90", "179.90"), reply
        assert read(node, "WriteoffBonus") == "0.00", reply  # the stub core gives no discount
        rows = [
            (read(i, "PositionNumber"), read(i, "WriteoffBonus")) for i in xml_fields.children(node, "Item")
        ]
        assert rows == [("1", "0.00"), ("2", "0.00")], rows
        assert (xml_fields.child(node, "CardBalance", "R", required=False) is None) == (not online), reply

    def check_error(self, reply: Reply) -> None:
        code, text, error = fault(reply)
        expected = (
            {"soap:Server"}
            if reply.status >= 500
            else {"soap:Client", "soap:VersionMismatch", "soap:MustUnderstand"}
        )
        assert code in expected and text and error.isupper(), reply


class TestOneCCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = OneCAdapter()
