"""Requests as 1C modules and Manzana clients send them, written by hand for the onec tests.

:func:`cheque` builds a ChequeRequest in XSD order (as zeep or a 1C XDTO writer does) with a
default namespace; every part can be overridden or left out, and :func:`envelope` wraps any
ProcessRequest body in a SOAP 1.1 (or 1.2) envelope.
"""

from __future__ import annotations

import base64

NS = "http://loyalty.manzanagroup.ru/loyalty.xsd"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
USER, PASSWORD = "1c", "onec-secret"
OPTIONS = {"user": USER, "password": PASSWORD, "public_url": "https://gw.test/v1/onec/POSProcessing.asmx"}
PATH = "/POSProcessing.asmx"
CARD = "2000012345"
WHEN = "2026-03-14T12:00:00+03:00"
ITEMS = (("1", "MILK", "89.90", "1", "89.90"), ("2", "BREAD", "45.00", "2", "90.00"))


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


HEADERS = {
    "Authorization": basic(),
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": '"http://loyalty.manzanagroup.ru/loyalty.xsd/ProcessRequest"',
}


def item(
    position: str, article: str, price: str, qty: str, summ: str, *, discounted: str = "", extra: str = ""
) -> str:
    return (
        f"<Item><PositionNumber>{position}</PositionNumber><Article>{article}</Article><Price>{price}</Price>"
        f"<Quantity>{qty}</Quantity><Summ>{summ}</Summ><Discount>0</Discount>"
        f"<SummDiscounted>{discounted or summ}</SummDiscounted>{extra}</Item>"
    )


def cheque(
    kind: str = "Fiscal",
    op: str = "Sale",
    *,
    request_id: str = "R-1",
    number: str = "42",
    card: str | None = CARD,
    when: str = WHEN,
    paid_by_bonus: str = "0",
    pos: str = "POS1",
    items: tuple[tuple[str, str, str, str, str], ...] = ITEMS,
    reference: str = "",
    extra: str = "",
    summ: str = "",
) -> str:
    body_items = "".join(item(*i) for i in items)
    total = summ or f"{sum(float(i[4]) for i in items):.2f}"
    card_el = f"<Card><CardNumber>{card}</CardNumber></Card>" if card else ""
    return (
        f'<ChequeRequest ChequeType="{kind}"><RequestID>{request_id}</RequestID>{card_el}'
        f"<DateTime>{when}</DateTime><Organization>ORG</Organization><BusinessUnit>SHOP1</BusinessUnit>"
        f"<POS>{pos}</POS>{reference}<Number>{number}</Number><OperationType>{op}</OperationType>"
        f"<Summ>{total}</Summ><Discount>0</Discount><SummDiscounted>{total}</SummDiscounted>"
        f"<PaidByBonus>{paid_by_bonus}</PaidByBonus>{extra}{body_items}</ChequeRequest>"
    )


def reference(number: str = "42", when: str = WHEN, pos: str = "POS1") -> str:
    return (
        f"<ChequeReference><Organization>ORG</Organization><BusinessUnit>SHOP1</BusinessUnit>"
        f"<POS>{pos}</POS><Number>{number}</Number><DateTime>{when}</DateTime></ChequeReference>"
    )


def balance(card: str = CARD, request_id: str = "B-1") -> str:
    return (
        f"<BalanceRequest><RequestID>{request_id}</RequestID><Card><CardNumber>{card}</CardNumber></Card>"
        f"<DateTime>{WHEN}</DateTime><Organization>ORG</Organization><BusinessUnit>SHOP1</BusinessUnit>"
        "<POS>POS1</POS></BalanceRequest>"
    )


def envelope(
    *requests: str, soap: str = SOAP11, ns: str = NS, prolog: str = '<?xml version="1.0"?>', header: str = ""
) -> bytes:
    inner = "".join(requests)
    return (
        f'{prolog}<s:Envelope xmlns:s="{soap}">{header}<s:Body><ProcessRequest xmlns="{ns}">'
        f"<request>{inner}</request><orgName>ORG</orgName></ProcessRequest></s:Body></s:Envelope>"
    ).encode()


def token_attribute(token: str) -> str:
    return f"<ExtendedAttribute><Key>posgw_calc_token</Key><Value>{token}</Value></ExtendedAttribute>"


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    + envelope(cheque()).split(b"?>", 1)[1].replace(b"<Article>MILK", b"<Article>&lol3;")
)
EXTERNAL_ENTITY = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + envelope(
    cheque()
).split(b"?>", 1)[1].replace(b"<Article>MILK", b"<Article>&x;")
DEEP = envelope(
    cheque().replace("<Article>MILK</Article>", "<Article>" + "<a>" * 40 + "</a>" * 40 + "</Article>")
)
INVALID_UTF8 = envelope(cheque()).replace(b"MILK", b"MI\xff\xfeK")
MUST_UNDERSTAND = envelope(
    cheque(), header='<s:Header><t:Tx xmlns:t="urn:x" s:mustUnderstand="1"/></s:Header>'
)
