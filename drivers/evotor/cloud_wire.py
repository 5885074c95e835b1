"""Evotor cloud webhooks on the wire: receipts (v2), documents (v1 and REST-v2), user/verify.

Pure. Cloud money is JSON numbers in rubles (kopecks only in OFD data, which we never
receive); paybacks in v1 documents carry negative sums and quantities, so magnitudes are
taken. Bodies may be one object or an array (the spec says array, traffic shows one
object): both are accepted. v1 documents published by Evotor carry trailing commas, so
the documents endpoint parses leniently. Every malformed input raises
:class:`gateway.errors.BadInput`; documents that are not receipts (sessions, inventory)
parse into :class:`CloudDoc` with ``receipt_kind`` ``None`` and a reason, to be
acknowledged and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drivers.evotor.wire import ident, loads
from gateway.errors import BadInput
from gateway.fields import kopecks, line_amount, lst, milli, obj, opt_lst, opt_obj, text, timestamp, unsigned
from gateway.receipt import MAX_LINES

RECEIPT_TYPES = {"SELL": "sale", "PAYBACK": "refund"}


@dataclass(frozen=True, slots=True)
class CloudItem:
    item_id: str  # the product's id (commodity uuid) when the cloud gives one
    code: str
    name: str
    price: int  # unit price, kopecks
    qty_milli: int  # magnitude
    amount: int  # price x quantity before discounts, kopecks (magnitude)
    discount: int  # all discounts on the item, kopecks (magnitude)


@dataclass(frozen=True, slots=True)
class CloudDoc:
    """One receipt-like cloud message, whichever of the three shapes it came in."""

    doc_id: str  # the receipt uuid: equals the plugin's receiptUuid
    doc_type: str  # SELL, PAYBACK, OPEN_SESSION, ...
    receipt_kind: str | None  # "sale" | "refund" | None (acknowledge and ignore)
    ignored_reason: str
    device_id: str
    store_id: str
    number: str
    session: str
    occurred_at: datetime | None
    base_doc_id: str
    items: tuple[CloudItem, ...]
    extras: dict[str, object]


def _many(root: object) -> list[object]:
    return lst(root, "body") if isinstance(root, list) else [root]


def _kind(doc_type: str) -> tuple[str | None, str]:
    kind = RECEIPT_TYPES.get(doc_type)
    return kind, "" if kind else f"document type {doc_type[:40]!r} carries no sale or refund"


def parse_receipts(body: bytes) -> list[CloudDoc]:
    """``POST /api/v2/receipts``: ``{id, timestamp, userId, type, version, data{...}}``."""
    out: list[CloudDoc] = []
    for i, env_raw in enumerate(_many(loads(body))):
        at = f"body[{i}]"
        env = obj(env_raw, at)
        data = obj(env.get("data"), f"{at}.data")
        doc_type = text(data.get("type"), f"{at}.data.type", required=True)
        kind, why = _kind(doc_type)
        refund = kind == "refund"
        items = []
        for j, it in enumerate(opt_lst(data.get("items"), f"{at}.data.items")):
            w = f"{at}.data.items[{j}]"
            item = obj(it, w)
            price, qty = _money(item, "price", w, refund=refund), _qty(item, "quantity", w, refund=refund)
            items.append(CloudItem(
                item_id=ident(item.get("id"), f"{w}.id", required=False),
                code=ident(item.get("code"), f"{w}.code", required=False),
                name=text(item.get("name"), f"{w}.name"),
                price=price, qty_milli=qty, amount=line_amount(price, qty),
                discount=_money(item, "discount", w, refund=refund, default=0),
            ))
        _cap(items, f"{at}.data.items")
        out.append(CloudDoc(
            doc_id=ident(data.get("id"), f"{at}.data.id"), doc_type=doc_type, receipt_kind=kind,
            ignored_reason=why, device_id=ident(data.get("deviceId"), f"{at}.data.deviceId", required=False),
            store_id=ident(data.get("storeId"), f"{at}.data.storeId", required=False),
            number=ident(data.get("number"), f"{at}.data.number", required=False),
            session=ident(data.get("shiftId"), f"{at}.data.shiftId", required=False),
            occurred_at=timestamp(data.get("dateTime"), f"{at}.data.dateTime"),
            base_doc_id=ident(data.get("baseReceiptId"), f"{at}.data.baseReceiptId", required=False),
            items=tuple(items), extras=opt_obj(data.get("extras"), f"{at}.data.extras"),
        ))
    return out


def parse_documents(body: bytes) -> list[CloudDoc]:
    """``PUT /api/v1/inventories/stores/{store}/documents``: v1 or REST-v2 documents."""
    out: list[CloudDoc] = []
    for i, raw in enumerate(_many(loads(body, lenient=True))):
        doc = obj(raw, f"body[{i}]")
        if doc.get("version") == "V2" or "body" in doc:
            out.append(_document_v2(doc, f"body[{i}]"))
        else:
            out.append(_document_v1(doc, f"body[{i}]"))
    return out


def _document_v1(doc: dict[str, object], at: str) -> CloudDoc:
    doc_type = text(doc.get("type"), f"{at}.type", required=True)
    kind, why = _kind(doc_type)
    refund = kind == "refund"
    items: list[CloudItem] = []
    base = number = ""
    for j, tr_raw in enumerate(opt_lst(doc.get("transactions"), f"{at}.transactions")):
        w = f"{at}.transactions[{j}]"
        tr = obj(tr_raw, w)
        tr_type = text(tr.get("type"), f"{w}.type")
        if tr_type == "DOCUMENT_OPEN":
            base = ident(tr.get("baseDocumentUUID"), f"{w}.baseDocumentUUID", required=False)
        elif tr_type == "DOCUMENT_CLOSE_FPRINT":
            number = ident(tr.get("receiptNumber"), f"{w}.receiptNumber", required=False)
        elif tr_type == "REGISTER_POSITION":
            price, amount = _money(tr, "price", w, refund=refund), _money(tr, "sum", w, refund=refund)
            result = _money(tr, "resultSum", w, refund=refund, default=amount)
            items.append(CloudItem(
                item_id=ident(tr.get("commodityUuid"), f"{w}.commodityUuid", required=False),
                code=ident(tr.get("commodityCode"), f"{w}.commodityCode", required=False),
                name=text(tr.get("commodityName"), f"{w}.commodityName"),
                price=price, qty_milli=_qty(tr, "quantity", w, refund=refund),
                amount=amount, discount=max(0, amount - result),
            ))
    _cap(items, f"{at}.transactions")
    return CloudDoc(
        doc_id=ident(doc.get("uuid"), f"{at}.uuid"), doc_type=doc_type, receipt_kind=kind,
        ignored_reason=why, device_id=ident(doc.get("deviceUuid"), f"{at}.deviceUuid", required=False),
        store_id=ident(doc.get("storeUuid"), f"{at}.storeUuid", required=False),
        number=number or ident(doc.get("number"), f"{at}.number", required=False),
        session=ident(doc.get("sessionNumber"), f"{at}.sessionNumber", required=False),
        occurred_at=timestamp(doc.get("closeDate"), f"{at}.closeDate"),
        base_doc_id=base, items=tuple(items), extras=opt_obj(doc.get("extras"), f"{at}.extras"),
    )


def _document_v2(doc: dict[str, object], at: str) -> CloudDoc:
    doc_type = text(doc.get("type"), f"{at}.type", required=True)
    kind, why = _kind(doc_type)
    refund = kind == "refund"
    body = opt_obj(doc.get("body"), f"{at}.body")
    items: list[CloudItem] = []
    for j, pos_raw in enumerate(opt_lst(body.get("positions"), f"{at}.body.positions")):
        w = f"{at}.body.positions[{j}]"
        pos = obj(pos_raw, w)
        price, amount = _money(pos, "price", w, refund=refund), _money(pos, "sum", w, refund=refund)
        result = _money(pos, "result_sum", w, refund=refund, default=amount)
        items.append(CloudItem(
            item_id=ident(pos.get("product_id"), f"{w}.product_id", required=False),
            code=ident(pos.get("code"), f"{w}.code", required=False),
            name=text(pos.get("product_name", pos.get("name")), f"{w}.product_name"),
            price=price, qty_milli=_qty(pos, "quantity", w, refund=refund),
            amount=amount, discount=max(0, amount - result),
        ))
    _cap(items, f"{at}.body.positions")
    return CloudDoc(
        doc_id=ident(doc.get("id"), f"{at}.id"), doc_type=doc_type, receipt_kind=kind, ignored_reason=why,
        device_id=ident(doc.get("device_id"), f"{at}.device_id", required=False),
        store_id=ident(doc.get("store_id"), f"{at}.store_id", required=False),
        number=ident(doc.get("number"), f"{at}.number", required=False),
        session=ident(doc.get("session_number"), f"{at}.session_number", required=False),
        occurred_at=timestamp(doc.get("close_date"), f"{at}.close_date"),
        base_doc_id=ident(body.get("base_document_id", doc.get("base_document_id")),
                          f"{at}.body.base_document_id", required=False),
        items=tuple(items), extras=opt_obj(doc.get("extras"), f"{at}.extras"),
    )


def _money(src: dict[str, object], key: str, where: str, *, refund: bool, default: int | None = None) -> int:
    """``src[key]`` in kopecks as a magnitude (negative only in a refund document)."""
    return unsigned(kopecks(src.get(key), f"{where}.{key}", default=default), f"{where}.{key}", refund=refund)


def _qty(src: dict[str, object], key: str, where: str, *, refund: bool) -> int:
    """``src[key]`` in thousandths as a magnitude (negative only in a refund document)."""
    return unsigned(milli(src.get(key), f"{where}.{key}"), f"{where}.{key}", refund=refund)


def _cap(items: list[CloudItem], where: str) -> None:
    if len(items) > MAX_LINES:
        raise BadInput(f"at most {MAX_LINES} positions", where)


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    user_uuid: str


def parse_user_verify(body: bytes) -> VerifyRequest:
    """``POST /api/v1/user/verify``: ``{userUuid, username, password, customField}``."""
    root = obj(loads(body), "body")
    return VerifyRequest(user_uuid=ident(root.get("userUuid"), "userUuid"))
