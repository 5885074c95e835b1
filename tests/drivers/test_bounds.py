"""One set of bounds for every driver, enforced on the canonical receipt and event (issue 11, item 4).

Each case reproduces what was once answered 200 and stored: a Modul Kassa sale with a negative
price, amount or quantity and an Evotor cloud sale with negative sums (both turned into
positive sales), control characters and bidi overrides in identifiers, a Poster order id with a
NUL, and dates far outside a sane window. Through the real daemon each gets its vendor's 4xx and
nothing is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.drivers.compliance_harness import Request, running
from tests.drivers.evotor.test_cloud_wire import receipt_env
from tests.drivers.modulkassa.test_wire import closed
from tests.drivers.native.test_compliance import AUTH, SALE
from tests.drivers.poster import payloads as poster

EVOTOR = {"pairing_tokens": ["plug-tok"], "cloud_user_token": "user-tok", "cloud_app_token": "app-tok"}
CLOUD = {"Authorization": "Bearer user-tok", "Content-Type": "application/json"}
MODULKASSA = {"pairing_tokens": ["plugin-token"]}
PLUGIN = {"X-Gateway-Token": "plugin-token", "Content-Type": "application/json"}
POSTER = {"application_secret": "s3cr3t", "pairing_tokens": ["pair-tok"]}
APP = {"X-Gateway-Token": "pair-tok", "Content-Type": "application/json"}


def _json(path: str, body: Any, headers: dict[str, str], note: str) -> Request:
    return Request(path, json.dumps(body).encode(), dict(headers), note=note)


def _modulkassa(mutate: dict[str, Any], note: str) -> Request:
    event = closed()
    check = json.loads(event["extras"]["check"])
    check["inventPositions"][0].update(mutate)
    event["extras"]["check"] = json.dumps(check)
    return _json("/event", event, PLUGIN, note)


def _evotor_cloud(mutate: dict[str, Any], note: str) -> Request:
    env = receipt_env()
    env["data"]["items"][0].update(mutate)
    return _json("/cloud/api/v2/receipts", env, CLOUD, note)


def _native(note: str, **fields: Any) -> Request:
    return _json("/sales", dict(SALE, **fields), AUTH, note)


CASES: list[tuple[str, dict[str, Any], Request]] = [
    ("modulkassa", MODULKASSA, _modulkassa({"price": -150.00}, "negative price in a sale")),
    ("modulkassa", MODULKASSA, _modulkassa({"amount": -100.00}, "negative amount in a sale")),
    ("modulkassa", MODULKASSA, _modulkassa({"quantity": -2}, "negative quantity in a sale")),
    ("evotor", EVOTOR, _evotor_cloud({"price": -89.9}, "cloud SELL with a negative price")),
    ("evotor", EVOTOR, _evotor_cloud({"quantity": -2}, "cloud SELL with a negative quantity")),
    ("native", {"api_keys": ["till-key"]}, _native("NUL in the receipt number", receipt_number="9\u0000")),
    ("native", {"api_keys": ["till-key"]}, _native("bidi override in the register", register_id="R\u202e1")),
    ("native", {"api_keys": ["till-key"]}, _native("year 9999", occurred_at="9999-12-31T23:59:59+00:00")),
    ("native", {"api_keys": ["till-key"]}, _native("1970", occurred_at="1970-01-01T00:00:00+00:00")),
]


@pytest.mark.parametrize(("driver", "options", "request_"), CASES, ids=[c[2].note for c in CASES])
async def test_out_of_bounds_input_is_refused_and_nothing_stored(
    driver: str, options: dict[str, Any], request_: Request, tmp_path: Path,
) -> None:
    if driver == "native":
        options = {"api_keys": [AUTH["Authorization"].removeprefix("Bearer ")]}
    async with running(driver, options, tmp_path) as gw:
        reply = await gw.send(request_)
        assert reply.status == 400, (request_.note, reply)
        assert gw.rows() == []


async def test_a_poster_order_id_with_a_nul_is_refused(tmp_path: Path) -> None:
    body = json.loads(poster.after_close())
    body["data"]["order"]["id"] = "\U0001f4a5\u0000"
    async with running("poster", POSTER, tmp_path) as gw:
        reply = await gw.send(_json("/pos-event", body, APP, "order id with a NUL"))
        assert reply.status == 400 and json.loads(reply.body)["status"] == "error", reply
        assert gw.rows() == []
