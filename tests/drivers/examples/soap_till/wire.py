"""The SOAP till's SOAP 1.1 envelopes in and out, and their mapping to Receipt / Event (pure).

In: ``POST text/xml``, a SOAP 1.1 ``Envelope`` whose ``Body`` holds one operation element in
:data:`NS` (the SOAPAction header is not needed: the operation is the body element)::

    <Calculate><Till/><At/> (RFC 3339) <Card/>? <Lines><Line><Sku/><Name/>? <Price/> (roubles)
      <Quantity/> (units, up to 3 decimals)</Line>+</Lines></Calculate>
    <Sale> the same, plus <ReceiptId/> and <CalcToken/>? (as CalculateResponse gave it) </Sale>

Out: ``CalculateResponse`` (per-line ``Discount`` and ``Paid`` in roubles, ``Slip``, ``CalcToken``,
``Offline``), ``SaleResponse`` (``Accepted``, ``Duplicate``), or a ``soap:Fault`` whose faultcode is
``soap:Client`` for the caller's faults (``VersionMismatch`` for a non-1.1 envelope,
``MustUnderstand`` for a header we must but cannot understand), ``soap:Server`` for ours, with
``detail/Error/{Code,Field}``. Money is integer kopecks inside, decimal roubles on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information

from gateway import fields, xml_fields
from gateway.driver import CalcResult
from gateway.errors import BadInput
from gateway.receipt import Event, IdKind, Line, Receipt, sale_event
from gateway.slip import slip_text

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:posgw:example:soap-till:v1"
OPERATIONS = ("Calculate", "Sale")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class EnvelopeFault(BadInput):
    """Bad input that SOAP 1.1 names by its own faultcode instead of ``Client``."""

    def __init__(self, faultcode: str, message: str, where: str) -> None:
        super().__init__(message, where)
        self.faultcode = faultcode


@dataclass(frozen=True)
class Operation:
    name: str  # one of OPERATIONS
    element: Any  # the operation element (lxml)

    @property
    def where(self) -> str:
        return f"Envelope/Body/{self.name}"


def _ns(element: Any) -> str:
    tag = str(element.tag)
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def operation(body: bytes, *, max_bytes: int) -> Operation:
    """The one operation of a SOAP 1.1 request; BadInput (or EnvelopeFault) for anything else."""
    root = xml_fields.parse(body, "Envelope", max_bytes=max_bytes)
    if xml_fields.name(root) != "Envelope":
        raise BadInput("not a SOAP envelope", xml_fields.name(root))
    if _ns(root) != SOAP_NS:
        raise EnvelopeFault("VersionMismatch", f"send a SOAP 1.1 envelope ({SOAP_NS})", "Envelope")
    header = xml_fields.child(root, "Header", "Envelope", required=False)
    for entry in [] if header is None else header:
        at = f"Envelope/Header/{xml_fields.name(entry)}" if isinstance(entry.tag, str) else ""
        if at and xml_fields.attribute(entry, "mustUnderstand", at) == "1":
            raise EnvelopeFault("MustUnderstand", "a header marked mustUnderstand is not understood", at)
    soap_body = xml_fields.child(root, "Body", "Envelope")
    assert soap_body is not None  # required: child() raised BadInput when absent
    found = [c for c in soap_body if isinstance(c.tag, str)]
    if len(found) != 1:
        raise BadInput("must hold exactly one operation element", "Envelope/Body")
    op, name = found[0], xml_fields.name(found[0])
    if _ns(op) != NS or name not in OPERATIONS:
        raise BadInput(f"unknown operation {{{_ns(op)}}}{name}; send Calculate or Sale in {NS}",
                       f"Envelope/Body/{name}")
    return Operation(name, op)


def receipt(op: Operation, *, store_id: str, number_required: bool) -> Receipt:
    """The till's receipt; BadInput naming the element path for anything wrong."""
    where, el = op.where, op.element
    items = xml_fields.children(xml_fields.child(el, "Lines", where), "Line")
    if not items:
        raise BadInput("a receipt needs at least one Line", f"{where}/Lines")
    lines = []
    for i, item in enumerate(items, 1):
        at = f"{where}/Lines/Line[{i}]"
        price = xml_fields.kopecks(xml_fields.child(item, "Price", at), f"{at}/Price", signed=False)
        qty = xml_fields.milli(xml_fields.child(item, "Quantity", at), f"{at}/Quantity", signed=False)
        lines.append(Line(line_id=str(i), sku=xml_fields.child_text(item, "Sku", at, required=True),
                          name=xml_fields.child_text(item, "Name", at), price=price, qty_milli=qty,
                          amount=fields.line_amount(price, qty)))
    when = fields.timestamp(xml_fields.child_text(el, "At", where, required=True), f"{where}/At")
    assert when is not None  # At is required above
    card = xml_fields.child_text(el, "Card", where)
    return Receipt(register_id=xml_fields.child_text(el, "Till", where, required=True),
                   receipt_number=xml_fields.child_text(el, "ReceiptId", where, required=number_required),
                   lines=tuple(lines), occurred_at=when, store_id=store_id,
                   customer=fields.customer(IdKind.CARD, card, f"{where}/Card") if card else None).validate()


def sale(op: Operation, *, store_id: str) -> Event:
    """The sale event; its key is the till's identity of the receipt: ``soap_till:<till>:<receipt id>``."""
    r = receipt(op, store_id=store_id, number_required=True)
    token = xml_fields.child_text(op.element, "CalcToken", op.where, limit=4096)
    return replace(sale_event(r, key=f"soap_till:{r.register_id}:{r.receipt_number}"), calc_token=token)


# ------------------------------------------------------------------ answers


def _safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _add(parent: Any, tag: str, text: str | None = None, *, ns: str | None = NS) -> Any:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}" if ns else tag)
    if text is not None:
        element.text = _safe(text)
    return element


def _envelope(fill: Any) -> bytes:
    env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "t": NS})
    fill(_add(env, "Body", ns=SOAP_NS))
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def calc_answer(r: Receipt, result: CalcResult | None) -> bytes:
    """CalculateResponse; ``None`` (the gateway could not calculate) is "sell without loyalty"."""
    by_id = {} if result is None else {x.line_id: x for x in result.lines}

    def fill(body: Any) -> None:
        answer = _add(body, "CalculateResponse")
        _add(answer, "Offline", "true" if result is not None and result.offline else "false")
        _add(answer, "Discount", fields.rubles(0 if result is None else result.total_discount))
        lines = _add(answer, "Lines")
        for line in r.lines:
            calc = by_id.get(line.line_id)
            row = _add(lines, "Line")
            _add(row, "Number", line.line_id)
            _add(row, "Discount", fields.rubles(calc.discount if calc else 0))
            _add(row, "Paid", fields.rubles(calc.paid if calc else line.amount))
        _add(answer, "Slip", "" if result is None else slip_text(r.customer, result, print_balance=True))
        _add(answer, "CalcToken", "" if result is None else result.token)

    return _envelope(fill)


def sale_answer(duplicate: bool) -> bytes:
    def fill(body: Any) -> None:
        answer = _add(body, "SaleResponse")
        _add(answer, "Accepted", "true")
        _add(answer, "Duplicate", "true" if duplicate else "false")

    return _envelope(fill)


def fault(faultcode: str, message: str, *, error: str, field: str = "") -> bytes:
    """A SOAP 1.1 Fault: ``faultcode`` Client, Server, VersionMismatch or MustUnderstand."""
    def fill(body: Any) -> None:
        node = _add(body, "Fault", ns=SOAP_NS)
        _add(node, "faultcode", f"soap:{faultcode}", ns=None)
        _add(node, "faultstring", message[:500], ns=None)
        detail = _add(_add(node, "detail", ns=None), "Error")
        _add(detail, "Code", error)
        if field:
            _add(detail, "Field", field)

    return _envelope(fill)


def bad_input(exc: BadInput) -> bytes:
    code = exc.faultcode if isinstance(exc, EnvelopeFault) else "Client"
    return fault(code, str(exc), error="BAD_INPUT", field=exc.field)


def other(status: int, code: str, message: str) -> bytes:
    return fault("Client" if status < 500 else "Server", message, error=code)
