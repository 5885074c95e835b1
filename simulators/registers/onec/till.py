"""1C tills as a 1C WS-reference calls the service: zeep loads the gateway's WSDL over HTTP (Basic
auth, strict settings; the run fails when it cannot be built) and calls ``ProcessRequest``.

Written from the protocol notes (``../shared/protocols/onec.md``) and drivers/onec/README.md's
contract, never from the driver's code. Per receipt: Soft before payment (with a phone as the card),
Soft again with the write-off the customer asked (at most ``AvailablePayment``), Fiscal after payment;
now and then a Return citing the sale (``ChequeReference``) or a Rollback (``TransactionReference``),
and a BalanceRequest. Misbehaviour: the Fiscal resent under the same RequestID (a retry after a
timeout) or a new one (the module lost the answer), a Fiscal without its Soft, a write-off above the
approval (must get 90003 and not count), 300 items, a wrong password.

zeep is synchronous: each till runs in a worker thread with its own session; every call has
``operation_timeout``. Recorded in a :class:`~simulators.registers.native.report.Recorder` with
the gateway's key of each acknowledged document (``onec:<BU>:<POS>:<Number>:<date>:<sale|return>``,
``onec:rollback:<sale key>``), so a component test can compare them with what the core applied.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import requests
import zeep
from lxml import etree  # type: ignore[import-untyped]
from requests.auth import HTTPBasicAuth
from zeep.helpers import serialize_object
from zeep.transports import Transport

from simulators.registers.common import rubles
from simulators.registers.native.report import Ack, Recorder, SimReport

NS = "http://loyalty.manzanagroup.ru/loyalty.xsd"
PATH = "/v1/onec/POSProcessing.asmx"
MSK = timezone(timedelta(hours=3))
GOODS = (
    ("MILK", "Молоко", 8990),
    ("BREAD", "Хлеб", 4500),
    ("TEA", "Чай", 29900),
    ("CHEESE", "Сыр", 61250),
    ("APPLES", "Яблоки", 15990),
)


@dataclass(frozen=True)
class Misbehaviour:
    same_id_resend: float = 0.0  # the Fiscal sent twice under one RequestID (a retry after a timeout)
    new_id_resend: float = 0.0  # the Fiscal sent again under a new RequestID
    fiscal_without_soft: float = 0.0
    over_approval: float = 0.0  # a Fiscal asking more write-off than approved first (expects 90003)
    many_items: float = 0.0  # 300 items
    clock_ahead: float = 0.0  # the POS clock 3 minutes ahead
    raw_quirks: float = (
        0.0  # the first Soft hand-written: SOAP 1.2, no SOAPAction, RequestId, shuffled, commas
    )
    bad_password: float = 0.0


@dataclass(frozen=True)
class OneCConfig:
    user: str = "1c"
    password: str = ""
    business_unit: str = "SHOP1"
    customer_share: float = 0.8
    redeem_share: float = 0.4
    refund_share: float = 0.15
    cancel_share: float = 0.05
    balance_share: float = 0.2
    timeout_s: float = 5.0
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


def key(bu: str, pos: str, number: str, when: datetime, op: str) -> str:
    """The gateway's idempotency key of a cheque, as drivers/onec/README.md states it."""
    return f"onec:{bu}:{pos}:{number}:{when.astimezone(MSK).date().isoformat()}:{op}"


class Till:
    """One POS of a 1C infobase: a zeep client bound to the gateway's endpoint."""

    def __init__(self, gateway: str, pos: str, config: OneCConfig, rec: Recorder, rng: random.Random) -> None:
        self.pos, self.config, self.rec, self.rng = pos, config, rec, rng
        self.session = requests.Session()
        self.session.auth = HTTPBasicAuth(config.user, config.password)
        transport = Transport(session=self.session, timeout=10, operation_timeout=config.timeout_s)
        client = zeep.Client(
            gateway + PATH + "?wsdl", transport=transport, settings=zeep.Settings(strict=True)
        )
        # like WSПрокси.ТочкаПодключения: call the gateway we were given, whatever public_url the WSDL names
        self.service = client.create_service(f"{{{NS}}}POSProcessingSoap", gateway + PATH)
        self.requests = 0
        self.sold: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (Fiscal cheque, its answer)

    def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.service.ProcessRequest(request={"_value_1": [{kind: body}]}, orgName="ORG")
        [answer] = serialize_object(result, dict)  # zeep unwraps ProcessRequestResult to its choice list
        return dict(answer[kind.replace("Request", "Response")])

    def request_id(self) -> str:
        self.requests += 1
        return f"{self.pos}-{self.requests}"

    def cheque(
        self,
        kind: str,
        op: str,
        number: str,
        when: datetime,
        items: list[dict[str, Any]],
        phone: str,
        paid: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        total = sum(i["SummDiscounted"] for i in items)
        body = {
            "ChequeType": kind,
            "RequestID": self.request_id(),
            "DateTime": when,
            "Organization": "ORG",
            "BusinessUnit": self.config.business_unit,
            "POS": self.pos,
            "Number": number,
            "OperationType": op,
            "Summ": total,
            "Discount": Decimal(0),
            "SummDiscounted": total,
            "PaidByBonus": Decimal(paid) / 100,
            "Item": items,
            **extra,
        }
        if phone:
            body["Card"] = {"MobilePhone": phone}
        return body

    def items(self) -> list[dict[str, Any]]:
        count = 300 if self.rng.random() < self.config.misbehaviour.many_items else self.rng.randint(1, 4)
        out = []
        for n in range(1, count + 1):
            sku, name, price = self.rng.choice(GOODS)
            qty = self.rng.randint(1, 3)
            out.append(
                {
                    "PositionNumber": n,
                    "Article": f"{sku}{n}" if count > 10 else sku,
                    "ArticleName": name,
                    "Price": Decimal(price) / 100,
                    "Quantity": Decimal(qty),
                    "Summ": Decimal(price * qty) / 100,
                    "Discount": Decimal(0),
                    "SummDiscounted": Decimal(price * qty) / 100,
                }
            )
        if len({i["Article"] for i in out}) != len(out):  # one position per article keeps returns simple
            seen: set[str] = set()
            out = [i for i in out if not (i["Article"] in seen or seen.add(i["Article"]))]  # type: ignore[func-returns-value]
            for n, i in enumerate(out, 1):
                i["PositionNumber"] = n
        return out

    # ------------------------------------------------------------------ one receipt

    def sell(self, number: int, phones: list[str]) -> None:
        mis, cfg = self.config.misbehaviour, self.config
        self.rec.receipts += 1
        when = datetime.now(MSK).replace(microsecond=0)
        if self.rng.random() < mis.clock_ahead:
            when += timedelta(minutes=3)
        num = f"{number}"
        phone = self.rng.choice(phones) if phones and self.rng.random() < cfg.customer_share else ""
        items = self.items()
        paid = 0
        if self.rng.random() >= mis.fiscal_without_soft:
            started = time.perf_counter()
            body = self.cheque("Soft", "Sale", num, when, items, phone)
            soft = (
                self.raw_soft(body)
                if self.rng.random() < mis.raw_quirks
                else self.call("ChequeRequest", body)
            )
            self.rec.calc_ms.append((time.perf_counter() - started) * 1000)
            self.check_soft(soft, phone)
            available = int(Decimal(soft.get("AvailablePayment") or 0) * 100)
            if phone and available >= 100 and self.rng.random() < cfg.redeem_share:
                asked = self.rng.randint(1, available // 100) * 100
                again = self.call(
                    "ChequeRequest", self.cheque("Soft", "Sale", num, when, items, phone, asked)
                )
                self.check_soft(again, phone)
                paid = int(Decimal(again["WriteoffBonus"]) * 100)
                if paid < asked:
                    self.rec.rejections += 1
        if paid and self.rng.random() < mis.over_approval:
            refused = self.call(
                "ChequeRequest", self.cheque("Fiscal", "Sale", num, when, items, phone, paid + 100)
            )
            if refused["ReturnCode"] != 90003:
                self.rec.error(
                    f"{self.pos}/{num}: a write-off above the approval answered {refused['ReturnCode']}"
                )
        fiscal = self.cheque("Fiscal", "Sale", num, when, items, phone, paid)
        answer = self.commit("sale", fiscal, key(cfg.business_unit, self.pos, num, when, "sale"))
        if answer is None:
            return
        self.sold.append((fiscal, answer))
        if phone and self.rng.random() < cfg.balance_share:
            balance = self.call(
                "BalanceRequest",
                {
                    "RequestID": self.request_id(),
                    "DateTime": datetime.now(MSK),
                    "Card": {"MobilePhone": phone},
                    "BusinessUnit": cfg.business_unit,
                    "POS": self.pos,
                    "Organization": "ORG",
                },
            )
            if balance["ReturnCode"] != 0:
                self.rec.error(f"balance of {phone}: ReturnCode {balance['ReturnCode']} {balance['Message']}")
            else:
                self.rec.identified += 1
        roll = self.rng.random()
        if roll < cfg.cancel_share:
            self.rollback(fiscal, answer)
        elif roll < cfg.cancel_share + cfg.refund_share:
            self.refund(fiscal)

    def raw_soft(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Soft as hand-built modules send it: a SOAP 1.2 envelope over text/xml without SOAPAction,
        ``RequestId``, items before the header, decimal commas, a ``loy:`` prefix; read back with lxml."""

        def money(v: Decimal) -> str:
            return f"{v:.2f}".replace(".", ",")

        items = "".join(
            f"<loy:Item><loy:Article>{i['Article']}</loy:Article><loy:Quantity>{i['Quantity']}</loy:Quantity>"
            f"<loy:PositionNumber>{i['PositionNumber']}</loy:PositionNumber><loy:Price>{money(i['Price'])}"
            f"</loy:Price><loy:Summ>{money(i['Summ'])}</loy:Summ><loy:Discount>0</loy:Discount>"
            f"<loy:SummDiscounted>{money(i['SummDiscounted'])}</loy:SummDiscounted></loy:Item>"
            for i in body["Item"]
        )
        card = (
            f"<loy:Card><loy:MobilePhone>{body['Card']['MobilePhone']}</loy:MobilePhone></loy:Card>"
            if "Card" in body
            else ""
        )
        xml = (
            f'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:loy="{NS}">'
            "<soap:Body>"
            f'<loy:ProcessRequest><loy:request><loy:ChequeRequest ChequeType="soft">{items}{card}'
            f"<loy:Number>{body['Number']}</loy:Number><loy:OperationType>Sale</loy:OperationType>"
            f"<loy:Summ>{money(body['Summ'])}</loy:Summ><loy:Discount>0</loy:Discount>"
            f"<loy:SummDiscounted>{money(body['SummDiscounted'])}</loy:SummDiscounted>"
            f"<loy:PaidByBonus>0</loy:PaidByBonus><loy:RequestId>{body['RequestID']}</loy:RequestId>"
            f"<loy:DateTime>{body['DateTime'].isoformat()}</loy:DateTime><loy:POS>{body['POS']}</loy:POS>"
            f"<loy:BusinessUnit>{body['BusinessUnit']}</loy:BusinessUnit>"
            f"<loy:Organization>ORG</loy:Organization></loy:ChequeRequest></loy:request>"
            "</loy:ProcessRequest></soap:Body></soap:Envelope>"
        ).encode()
        reply = self.session.post(
            self.service._binding_options["address"],
            data=xml,
            headers={"Content-Type": "text/xml"},
            timeout=self.config.timeout_s,
        )
        node = etree.fromstring(reply.content).find(f".//{{{NS}}}ChequeResponse")
        if reply.status_code != 200 or node is None:
            raise zeep.exceptions.TransportError(
                f"a raw Soft got HTTP {reply.status_code}", reply.status_code
            )
        out: dict[str, Any] = {etree.QName(c).localname: c.text for c in node if len(c) == 0}
        out["ReturnCode"] = int(out["ReturnCode"])
        out["Item"] = [
            {etree.QName(x).localname: x.text for x in item} for item in node.iter(f"{{{NS}}}Item")
        ]
        if out.get("RequestID") != body["RequestID"]:
            self.rec.error(
                f"a raw Soft answered RequestID {out.get('RequestID')!r}, not {body['RequestID']!r}"
            )
        return out

    def check_soft(self, soft: dict[str, Any], phone: str) -> None:
        if soft["ReturnCode"] != 0:
            self.rec.error(f"{self.pos}: Soft answered {soft['ReturnCode']} {soft['Message']}")
        elif phone and soft.get("CardBalance") is None:
            self.rec.offline_answers += 1
        items = soft.get("Item") or []
        if sum(Decimal(i["WriteoffBonus"] or 0) for i in items) != Decimal(soft["WriteoffBonus"] or 0):
            self.rec.error(f"{self.pos}: item write-offs do not add up to {soft['WriteoffBonus']}")

    def commit(self, kind: str, body: dict[str, Any], gateway_key: str) -> dict[str, Any] | None:
        """A Fiscal until it is answered (a timeout or a 5xx is retried with the same RequestID, as a
        module does); with misbehaviour, sent again under the same or a new RequestID."""
        mis = self.config.misbehaviour
        attempts = 0
        answer: dict[str, Any] | None = None
        while answer is None and attempts < 5:
            attempts += 1
            try:
                answer = self.call("ChequeRequest", body)
            except (requests.RequestException, zeep.exceptions.TransportError, zeep.exceptions.Fault) as exc:
                self.rec.retries += 1
                if attempts == 5:
                    self.rec.unacknowledged += 1
                    self.rec.error(f"{gateway_key}: not answered after 5 attempts: {exc}")
                    return None
                time.sleep(0.2 * attempts)
        assert answer is not None
        if answer["ReturnCode"] != 0:
            self.rec.error(f"{gateway_key}: Fiscal answered {answer['ReturnCode']} {answer['Message']}")
            return None
        self.rec.acks.append(
            Ack(
                kind,
                gateway_key,
                f"{self.config.business_unit}/{self.pos}",
                gateway_key,
                False,
                attempts,
                {"TransactionID": answer["TransactionID"]},
            )
        )
        for share, fresh in ((mis.same_id_resend, False), (mis.new_id_resend, True)):
            if self.rng.random() < share:
                again = self.call(
                    "ChequeRequest", {**body, "RequestID": self.request_id()} if fresh else body
                )
                same = again["TransactionID"] == answer["TransactionID"] and again["ReturnCode"] == 0
                if not same or again["RequestID"] != (body["RequestID"] if not fresh else again["RequestID"]):
                    self.rec.error(f"{gateway_key}: a resend got another answer: {again['TransactionID']}")
                self.rec.acks.append(
                    Ack(
                        kind,
                        gateway_key,
                        f"{self.config.business_unit}/{self.pos}",
                        gateway_key,
                        True,
                        1,
                        {"TransactionID": again["TransactionID"]},
                    )
                )
        return answer

    def refund(self, fiscal: dict[str, Any]) -> None:
        items = fiscal["Item"][: max(1, len(fiscal["Item"]) // 2)]
        when = datetime.now(MSK).replace(microsecond=0)
        number = f"R{fiscal['Number']}"
        reference = {
            "Organization": "ORG",
            "BusinessUnit": fiscal["BusinessUnit"],
            "POS": fiscal["POS"],
            "Number": fiscal["Number"],
            "DateTime": fiscal["DateTime"],
        }
        body = self.cheque(
            "Fiscal",
            "Return",
            number,
            when,
            [dict(i) for i in items],
            fiscal["Card"]["MobilePhone"] if "Card" in fiscal else "",
            ChequeReference=reference,
        )
        self.commit("refund", body, key(self.config.business_unit, self.pos, number, when, "return"))

    def rollback(self, fiscal: dict[str, Any], answer: dict[str, Any]) -> None:
        body = {
            "ChequeType": "Fiscal",
            "RequestID": self.request_id(),
            "DateTime": datetime.now(MSK),
            "Organization": "ORG",
            "BusinessUnit": fiscal["BusinessUnit"],
            "POS": fiscal["POS"],
            "TransactionReference": {"TransactionID": answer["TransactionID"]},
            "OperationType": "Rollback",
            "Summ": Decimal(0),
            "Discount": Decimal(0),
            "SummDiscounted": Decimal(0),
        }
        sale = key(fiscal["BusinessUnit"], fiscal["POS"], fiscal["Number"], fiscal["DateTime"], "sale")
        self.commit("cancel", body, "onec:rollback:" + sale)

    def denied(self) -> None:
        """A call with a wrong password must be refused (401) and change nothing."""
        session = requests.Session()
        reply = session.post(
            self.service._binding_options["address"],
            data=b"<x/>",
            timeout=self.config.timeout_s,
            auth=HTTPBasicAuth(self.config.user, self.config.password + "-wrong"),
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )
        if reply.status_code != 401:
            self.rec.error(f"a wrong password got HTTP {reply.status_code}")
        else:
            self.rec.unauthorized += 1


def _run_till(
    gateway: str,
    pos: str,
    config: OneCConfig,
    rec: Recorder,
    rng: random.Random,
    numbers: list[int],
    phones: list[str],
) -> None:
    till = Till(gateway, pos, config, rec, rng)
    for number in numbers:
        if rng.random() < config.misbehaviour.bad_password:
            till.denied()
        try:
            till.sell(number, phones)
        except (requests.RequestException, zeep.exceptions.Error) as exc:
            rec.error(f"{pos}/{number}: {type(exc).__name__}: {exc}")


async def run_tills(
    gateway: str,
    config: OneCConfig,
    *,
    tills: int,
    receipts: int,
    seed: int,
    customers: list[str],
    first_number: int = 1,
) -> SimReport:
    """``tills`` POS (worker threads) ring up ``receipts`` cheques between them, numbered from
    ``first_number`` (a second run the same day must not reuse numbers: a counter reset); the report."""
    rec = Recorder()
    started = time.monotonic()
    gateway = gateway.rstrip("/")
    work = [list(range(first_number + t, first_number + receipts, tills)) for t in range(tills)]
    await asyncio.gather(
        *(
            asyncio.to_thread(
                _run_till,
                gateway,
                f"POS{t + 1}",
                config,
                rec,
                random.Random(seed * 1000 + t),
                work[t],
                customers,
            )
            for t in range(tills)
        )
    )
    return rec.report(seed=seed, tills=tills, elapsed_s=time.monotonic() - started)


def money(kop: int) -> str:
    return rubles(kop)
