"""MoySklad Loyalty API bodies for the driver's tests, shaped as the protocol notes §4-§6 and §12."""

from __future__ import annotations

import json
from typing import Any

STORE_ID = "6b1c0f2e-0b6a-11ef-0a80-0d6e00112233"
AGENT_ID = "9a4e2d10-0b6b-11ef-0a80-0d6e00445566"
PHONE = "+79031234567"
REMAP = "https://api.moysklad.ru/api/remap/1.2/entity"
TOKEN = "ms-token"
HEADERS = {"Lognex-Discount-API-Auth-Token": TOKEN, "Content-Type": "application/json"}


def store() -> dict[str, Any]:
    return {"meta": {"href": f"{REMAP}/retailstore/{STORE_ID}", "id": STORE_ID}, "name": "Магазин на Ленина"}


def agent(ms_id: str = AGENT_ID, phone: str = PHONE, **more: Any) -> dict[str, Any]:
    return {"meta": {"href": f"{REMAP}/counterparty/{ms_id}", "id": ms_id}, "phone": phone, **more}


def position(product: str, quantity: Any, price: Any, **more: Any) -> dict[str, Any]:
    return {
        "assortment": {
            "meta": {
                "href": f"{REMAP}/product/{product}",
                "id": product,
                "idType": "native",
                "type": "product",
            }
        },
        "quantity": quantity,
        "price": price,
        **more,
    }


def positions() -> list[dict[str, Any]]:
    return [
        position("1d2c3b4a-0b6c-11ef-0a80-0d6e00778899", 2, 500.00),
        position("2e3d4c5b-0b6c-11ef-0a80-0d6e00998877", 1, 250.00),
    ]


def recalc(
    *, spending: bool = False, preferred: Any = None, where: str = "top", **more: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retailStore": store(),
        "agent": agent(),
        "positions": positions(),
        "bonusProgram": {"transactionType": "SPENDING" if spending else "EARNING"},
    }
    if preferred is not None or where == "null":
        if where == "program":
            body["bonusProgram"]["preferredBonusToSpend"] = preferred
        else:
            body["preferredBonusToSpend"] = preferred
    return {**body, **more}


def sale(
    doc_id: str = "5f6e7d8c-6ea1-11f0-0a80-0d6e00aabbcc",
    *,
    spend: int = 0,
    earn: int = 0,
    pos: list[dict[str, Any]] | None = None,
    agent_body: Any = "default",
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retailStore": store(),
        "name": "00042",
        "moment": "2025-08-01 14:05:31",
        "meta": {"href": f"{REMAP}/retaildemand/{doc_id}" if doc_id else "", "id": doc_id},
        "positions": pos
        if pos is not None
        else [dict(p, discountPercent=0, discountedPrice=p["price"]) for p in positions()],
        "bonusProgram": {"bonusValueToSpend": spend, "bonusValueToEarn": earn},
        "cashSum": 1250.00,
        "noCashSum": 0,
    }
    if agent_body == "default":
        body["agent"] = {"meta": agent()["meta"]}
    elif agent_body is not None:
        body["agent"] = agent_body
    return {**body, **more}


def sales_return(
    doc_id: str = "7a8b9c0d-6ea1-11f0-0a80-0d6e00ddeeff",
    *,
    demand_id: str = "5f6e7d8c-6ea1-11f0-0a80-0d6e00aabbcc",
    pos: list[dict[str, Any]] | None = None,
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retailStore": store(),
        "name": "00007",
        "moment": "2025-08-02 10:00:00",
        "meta": {"href": f"{REMAP}/retailsalesreturn/{doc_id}", "id": doc_id},
        "demand": {"meta": {"href": f"{REMAP}/retaildemand/{demand_id}", "id": demand_id}},
        "agent": {"href": f"{REMAP}/counterparty/{AGENT_ID}", "id": AGENT_ID},  # Q2: flat
        "positions": pos
        if pos is not None
        else [position("2e3d4c5b-0b6c-11ef-0a80-0d6e00998877", 1, 250.00)],
        "cashSum": 250.00,
        "noCashSum": 0,
    }
    return {**body, **more}


def create(
    status: str = "UNCHECKED",
    ms_id: str = "0aa1b2c3-0b6b-11ef-0a80-0d6e00001111",
    phone: str = "+7 903 765-43-21",
) -> dict[str, Any]:
    return {
        "retailStore": store(),
        "meta": {"href": f"{REMAP}/counterparty/{ms_id}", "id": ms_id},
        "name": "Петрова Анна",
        "phone": phone,
        "syncId": "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        "statusCheck": status,
    }


def detail(ms_id: str = AGENT_ID, phone: str = PHONE) -> dict[str, Any]:
    return {"retailStore": store(), **agent(ms_id, phone), "name": "Петрова Анна"}


def dumps(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
