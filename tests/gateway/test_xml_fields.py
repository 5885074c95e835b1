"""gateway.xml_fields: a SOAP envelope read element by element, and hostile XML refused as BadInput."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway import xml_fields as x
from gateway.errors import BadInput

SOAP = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:lg="urn:posgw:loyalty">
  <soap:Header/>
  <soap:Body>
    <lg:Sale lg:version="2">
      <lg:Register> R1 </lg:Register>
      <lg:Number>42</lg:Number>
      <!-- a comment the parser drops -->
      <lg:Lines>
        <lg:Line id="1"><lg:Name>Молоко</lg:Name><lg:Price>86.00</lg:Price><lg:Qty>1.5</lg:Qty></lg:Line>
        <lg:Line id="2"><lg:Name>Хлеб</lg:Name><lg:Price>45.505</lg:Price><lg:Qty>2</lg:Qty></lg:Line>
      </lg:Lines>
      <lg:Discount/>
    </lg:Sale>
  </soap:Body>
</soap:Envelope>""".encode()


def sale() -> x.Element:
    body = x.child(x.parse(SOAP), "Body", "Envelope")
    assert body is not None
    found = x.child(body, "Sale", "Envelope/Body")
    assert found is not None
    return found


def test_soap_envelope_reads() -> None:
    s, at = sale(), "Envelope/Body/Sale"
    assert x.name(s) == "Sale" and x.attribute(s, "version", at) == "2"
    assert x.child_text(s, "Register", at, required=True) == "R1"
    assert x.child_text(s, "Cashier", at) == ""
    lines_el = x.child(s, "Lines", at)
    assert lines_el is not None
    lines = x.children(lines_el, "Line")
    read = [
        (x.attribute(line, "id", f"{at}/Lines/Line[{i}]", required=True),
         x.child_text(line, "Name", f"{at}/Lines/Line[{i}]"),
         x.kopecks(x.child(line, "Price", f"{at}/Lines/Line[{i}]"), f"{at}/Lines/Line[{i}]/Price"),
         x.milli(x.child(line, "Qty", f"{at}/Lines/Line[{i}]"), f"{at}/Lines/Line[{i}]/Qty"))
        for i, line in enumerate(lines)
    ]
    assert read == [("1", "Молоко", 8600, 1500), ("2", "Хлеб", 4551, 2000)]
    assert x.decimal(x.child(lines[1], "Price", "p"), "p") == Decimal("45.505")
    assert x.kopecks(x.child(s, "Discount", at), f"{at}/Discount", default=0) == 0
    assert x.kopecks(x.child(s, "Bonus", at, required=False), f"{at}/Bonus", default=0) == 0


@pytest.mark.parametrize(
    ("read", "field", "message"),
    [
        (lambda s: x.child(s, "Payments", "Env/Body/Sale"), "Env/Body/Sale/Payments", "is required"),
        (lambda s: x.child_text(s, "Lines", "Env/Body/Sale"), "Env/Body/Sale/Lines", "text, not elements"),
        (lambda s: x.kopecks(x.child(s, "Register", "S"), "S/Register"), "S/Register", "not a number"),
        (lambda s: x.kopecks(x.child(s, "Discount", "S"), "S/Discount"), "S/Discount", "is required"),
        (lambda s: x.attribute(s, "store", "S", required=True), "S/@store", "is required"),
        (lambda s: x.child_text(s, "Number", "S", limit=1), "S/Number", "at most 1"),
        (lambda s: x.child(x.children(x.child(s, "Lines", "S"), "Line")[0].getparent(), "Line", "S/Lines"),
         "S/Lines/Line", "once"),
    ],
)
def test_refusals_name_the_element_path(read: object, field: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        read(sale())  # type: ignore[operator]
    assert info.value.field == field


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (BILLION_LAUGHS, "document type|amplification"),  # libxml2 or our DTD check, whichever is first
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
         "document type"),
        (b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd"><r/>', "document type"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x">%p;]><r/>',
         "document type|malformed XML"),
        (b"<r>&x;</r>", "malformed XML"),
        (b"<a>" * 33 + b"</a>" * 33, "deeper than 32"),
        (b"<r>" + b"<i/>" * 20_000 + b"</r>", "more than 20000 elements"),
        (b"<r>" + b" " * (1 << 20) + b"</r>", "larger than"),
        (b"not xml", "malformed XML"),
        (b"<a></b>", "malformed XML"),
        (b"", "malformed XML"),
    ],
)
def test_hostile_or_malformed_xml_refused(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        x.parse(body)
    assert info.value.field == "body"


def test_entity_text_is_never_expanded() -> None:
    with pytest.raises(BadInput):
        x.parse(b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "expanded">]><r>&e;</r>')
    assert x.text(x.parse(b"<r>&amp;&lt;&#1052;</r>"), "r") == "&<М"  # predefined and numeric: plain text


def test_namespace_names_the_uri_or_nothing() -> None:
    root = x.parse(b'<e:Envelope xmlns:e="urn:env"><Body xmlns="urn:ns"><Op/></Body>'
                   b'<Bare xmlns=""/></e:Envelope>')
    assert x.namespace(root) == "urn:env"
    body = x.child(root, "Body", "Envelope")
    assert x.namespace(body) == "urn:ns" and x.namespace(x.child(body, "Op", "Body")) == "urn:ns"
    assert x.namespace(x.child(root, "Bare", "Envelope")) == ""
